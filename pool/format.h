/*
 * Cistern pool: the on-disk format (version 1).
 *
 * Every member is a file or block device laid out in 4 KiB blocks:
 *
 *   block 0             label (copy A)
 *   block 1, 2          superblock slots 0 and 1
 *   blocks 3 .. 255     reserved (zero)
 *   blocks 256 .. N-2   allocatable space: tree nodes and data, striped over members
 *   block N-1           label (copy B)
 *
 * All integers are little-endian. Every metadata block (label, superblock, tree node) begins
 * with struct md_header: a crc32c of the rest of the block, a magic naming its kind, the
 * block's own physical address (so a misdirected write or read is caught) and the
 * generation of the transaction that wrote it.
 *
 * A physical address (pblk) is 64 bits: the member index in the top 16 bits and the block
 * offset within that member in the low 48 bits. Address 0 is member 0's label, so 0 never
 * names a tree node or data and serves as "none".
 *
 * A commit writes the superblock slot holding the older generation on every member; at open
 * the valid slot with the highest generation wins.
 */
#ifndef CISTERN_POOL_FORMAT_H
#define CISTERN_POOL_FORMAT_H

#include <stdint.h>

/* Fields are stored in the host's order, which must be little-endian. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "on-disk format is little-endian");

#define CS_BLOCK_SHIFT 12
#define CS_BLOCK_SIZE (1u << CS_BLOCK_SHIFT)
#define CS_FORMAT_VERSION 1u

#define CS_LABEL_BLOCK 0u
#define CS_SUPER_BLOCK0 1u
#define CS_SUPER_SLOTS 2u
#define CS_FIRST_DATA_BLOCK 256u           /* 1 MiB: keeps data runs aligned */
#define CS_MIN_MEMBER_BLOCKS (CS_FIRST_DATA_BLOCK + 256u + 1u) /* 2 MiB of space at least */

#define CS_MAX_MEMBERS 64u
#define CS_POOL_NAME_MAX 64u

#define PBLK_MEMBER_SHIFT 48
#define PBLK_OFFSET_MASK ((1ull << PBLK_MEMBER_SHIFT) - 1)

/* Magic numbers of metadata block kinds. */
#define MD_MAGIC_LABEL 0x4c425343u /* "CSBL" */
#define MD_MAGIC_SUPER 0x50555343u /* "CSUP" */
#define MD_MAGIC_NODE 0x444e5343u  /* "CSND" */

struct md_header {
    uint32_t csum;       /* crc32c of bytes 4..4095 of the block, seeded with the magic */
    uint32_t magic;      /* MD_MAGIC_* */
    uint64_t blocknr;    /* this block's own physical address (pblk) */
    uint64_t generation; /* transaction that wrote it */
};
_Static_assert(sizeof(struct md_header) == 24, "md_header is 24 bytes");

/* Label: identifies a member and the pool it belongs to. Written at create and add. */
struct disk_label {
    struct md_header h;
    uint8_t pool_uuid[16];
    uint8_t member_uuid[16];
    uint32_t format_version; /* CS_FORMAT_VERSION */
    uint32_t member_index;   /* position in the superblock's member table */
    uint64_t member_blocks;  /* size of this member, in blocks, when labelled */
    uint64_t created_ns;     /* wall clock at label time, ns since the epoch */
    char pool_name[CS_POOL_NAME_MAX]; /* NUL-padded */
    uint8_t pad[CS_BLOCK_SIZE - 24 - 16 - 16 - 4 - 4 - 8 - 8 - CS_POOL_NAME_MAX];
};
_Static_assert(sizeof(struct disk_label) == CS_BLOCK_SIZE, "label is one block");

struct disk_member {
    uint8_t uuid[16];
    uint64_t blocks; /* size of the member in blocks */
    uint64_t reserved;
};
_Static_assert(sizeof(struct disk_member) == 32, "disk_member is 32 bytes");

/* Roots of the pool's trees, indexed by enum pool_root in pool.h. */
#define CS_MAX_ROOTS 8u

/* Superblock: the root of all state. The newest valid one is the pool. */
struct disk_super {
    struct md_header h;
    uint8_t pool_uuid[16];
    uint32_t format_version;
    uint32_t member_count;
    uint64_t roots[CS_MAX_ROOTS];     /* pblk of each tree's root; 0 = none */
    uint64_t allocated_blocks;        /* blocks with a reference count above zero */
    uint64_t cache_bytes;             /* metadata cache bound, bytes */
    uint64_t dirty_bound_bytes;       /* commit when dirty metadata passes this, bytes */
    uint32_t commit_interval_ms;      /* commit at least this often while dirty, ms */
    uint32_t low_space_pct;           /* warn when used space passes this, percent */
    uint64_t next_id;                 /* next volume id to hand out */
    char pool_name[CS_POOL_NAME_MAX]; /* NUL-padded */
    uint8_t reserved[256];
    struct disk_member members[CS_MAX_MEMBERS];
    uint8_t pad[CS_BLOCK_SIZE - 24 - 16 - 8 - 8 * CS_MAX_ROOTS - 8 - 8 - 8 - 8 - 8 -
                CS_POOL_NAME_MAX - 256 - 32 * CS_MAX_MEMBERS];
};
_Static_assert(sizeof(struct disk_super) == CS_BLOCK_SIZE, "superblock is one block");

/* B+tree node. Keys are 64-bit; values are fixed-size per tree type. Internal nodes hold
 * child addresses (8-byte values). Keys follow the header, then the values. */
#define NODE_FLAG_LEAF 1u

struct disk_node_header {
    struct md_header h;
    uint32_t flags;       /* NODE_FLAG_* */
    uint32_t nr_entries;  /* keys in use */
    uint32_t max_entries; /* capacity, from value size */
    uint32_t value_size;  /* bytes per value */
    uint32_t tree_type;   /* enum tree_type in pool.h */
    uint32_t level;       /* 0 for leaves, height above the leaves otherwise */
};
_Static_assert(sizeof(struct disk_node_header) == 48, "node header is 48 bytes");

#define NODE_SPACE (CS_BLOCK_SIZE - sizeof(struct disk_node_header))
#define NODE_MAX_ENTRIES(value_size) ((uint32_t)(NODE_SPACE / (8u + (value_size))))

/* Value of the reference-count tree: a run of blocks sharing one count. Key: first pblk. */
struct disk_refcount {
    uint64_t len;   /* blocks in the run */
    uint32_t count; /* references to each block of the run; never 0 on disk */
    uint32_t pad;
};
_Static_assert(sizeof(struct disk_refcount) == 16, "refcount value is 16 bytes");

#endif
