/*
 * image.c - VM image formats: names, detection by magic, and creation with qemu-img.
 *
 * Cistern reads and writes raw data itself; every other format goes through qemu's own
 * tools (qemu-nbd to serve an image, qemu-img to create one), so no image format parser of
 * ours ever meets an untrusted file.
 */
#include "cli/endpoint.h"

#include <inttypes.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *const format_names[] = {
    [FMT_AUTO] = "auto", [FMT_RAW] = "raw",   [FMT_QCOW2] = "qcow2",
    [FMT_VMDK] = "vmdk", [FMT_VHDX] = "vhdx", [FMT_VDI] = "vdi",
};

int image_format_parse(const char *s, enum image_format *out)
{
    for (size_t i = FMT_RAW; i < ARRAY_SIZE(format_names); i++)
        if (strcmp(s, format_names[i]) == 0) {
            *out = (enum image_format)i;
            return 0;
        }
    return -EINVAL;
}

const char *image_format_name(enum image_format f)
{
    return (size_t)f < ARRAY_SIZE(format_names) ? format_names[f] : "unknown";
}

enum image_format image_detect(const unsigned char *head, size_t len)
{
    static const char desc[] = "# Disk DescriptorFile";
    uint32_t vdi_sig;

    if (len >= 4 && memcmp(head, "QFI\xfb", 4) == 0)
        return FMT_QCOW2;
    if (len >= 4 && memcmp(head, "KDMV", 4) == 0)
        return FMT_VMDK;
    if (len >= sizeof desc - 1 && memcmp(head, desc, sizeof desc - 1) == 0)
        return FMT_VMDK;
    if (len >= 8 && memcmp(head, "vhdxfile", 8) == 0)
        return FMT_VHDX;
    if (len >= 0x44) {
        memcpy(&vdi_sig, head + 0x40, sizeof vdi_sig); /* little-endian on disk */
        if (vdi_sig == 0xbeda107fu)
            return FMT_VDI;
    }
    return FMT_RAW;
}

int image_create(enum image_format fmt, const char *path, uint64_t size)
{
    char sz[32];
    int status;
    pid_t pid;

    snprintf(sz, sizeof sz, "%" PRIu64, size);
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        int r = -errno;
        log_err("%s: cannot start qemu-img: %s", path, strerror(-r));
        return r;
    }
    if (pid == 0) {
        /* stdout of the child is ours for data (export to "-" excluded by the caller), so
         * keep qemu-img quiet there; its errors still go to stderr. */
        execlp("qemu-img", "qemu-img", "create", "-q", "-f", image_format_name(fmt), "--", path, sz,
               (char *)NULL);
        fprintf(stderr, "cistern: error: qemu-img: %s (needed to write %s images)\n",
                strerror(errno), image_format_name(fmt));
        _exit(127);
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            int r = -errno;
            log_err("%s: qemu-img: %s", path, strerror(-r));
            return r;
        }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 127)
            log_err("%s: qemu-img create -f %s failed", path, image_format_name(fmt));
        return -EIO;
    }
    return 0;
}
