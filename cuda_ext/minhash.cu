// MinHash permutations on the GPU: the step of dedup.minhash that scales with num_perm.
//
// Input: every document's 64-bit shingle hashes, flattened (dedup.signature.shingle_hashes,
// the numba tokenizer on the CPU), cut into tiles of at most TILE shingles of one document.
// One thread block per tile: the block stages its shingles in shared memory, each thread owns
// permutations p = threadIdx.x, threadIdx.x + blockDim.x, ... and takes the minimum of
// (a[p] * x + b[p]) >> 32 over the tile (uint64 arithmetic wraps mod 2^64, exactly as numpy
// and numba do), then atomicMin's it into sig[doc][p]. sig starts at 0xFFFFFFFF, which is the
// EMPTY value of a document without shingles, so empty documents need no special case and a
// long document split over many tiles reduces correctly in any order: min is associative and
// commutative, so the result is bit-identical to the CPU kernels whatever the scheduling.
//
// perm_min is __host__ __device__: the CPU test compiles this same file with nvcc as a host
// library (-DASSAY_HOST_TEST) and checks minhash_host against the numba kernel bit for bit.

#ifndef TILE
#define TILE 2048
#endif

__host__ __device__ inline unsigned int perm_min(const unsigned long long* sh, int n,
                                                 unsigned long long a, unsigned long long b,
                                                 unsigned int m) {
    for (int i = 0; i < n; ++i) {
        unsigned int v = (unsigned int)((a * sh[i] + b) >> 32);
        m = v < m ? v : m;
    }
    return m;
}

extern "C" __global__ void minhash_tiles(const unsigned long long* __restrict__ shingles,
                                         const long long* __restrict__ tile_doc,
                                         const long long* __restrict__ tile_start,
                                         const long long* __restrict__ tile_end,
                                         const unsigned long long* __restrict__ a,
                                         const unsigned long long* __restrict__ b,
                                         int num_perm,
                                         unsigned int* __restrict__ sig) {
    __shared__ unsigned long long sh[TILE];
    const long long t = blockIdx.x;
    const long long s0 = tile_start[t];
    const int n = (int)(tile_end[t] - s0);
    const long long doc = tile_doc[t];
    for (int i = threadIdx.x; i < n; i += blockDim.x) sh[i] = shingles[s0 + i];
    __syncthreads();
    for (int p = threadIdx.x; p < num_perm; p += blockDim.x) {
        unsigned int m = perm_min(sh, n, a[p], b[p], 0xFFFFFFFFu);
        atomicMin(&sig[doc * (long long)num_perm + p], m);
    }
}

#ifdef ASSAY_HOST_TEST
// The same arithmetic on the CPU, one document at a time (for the parity test only).
extern "C" void minhash_host(const unsigned long long* shingles, const long long* offsets,
                             long long n_docs, const unsigned long long* a,
                             const unsigned long long* b, int num_perm, unsigned int* sig) {
    for (long long d = 0; d < n_docs; ++d) {
        const unsigned long long* sh = shingles + offsets[d];
        int n = (int)(offsets[d + 1] - offsets[d]);
        for (int p = 0; p < num_perm; ++p)
            sig[d * num_perm + p] = perm_min(sh, n, a[p], b[p], 0xFFFFFFFFu);
    }
}
#endif
