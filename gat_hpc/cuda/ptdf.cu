// PTDF flows for many injection scenarios: F = P @ PTDF^T, a dense "NT" matrix product
//   F[s, m] = sum_n P[s, n] * PTDF[m, n]      P: S x N, PTDF: M x N, F: S x M, all row-major
// (both operands keep the bus index n contiguous, as the arrays come from numpy).
//
// Classic shared-memory tiling: a block of 256 threads computes a BM x BN tile of F, walking
// n in steps of BK; each step stages a BK x BM slice of P and a BK x BN slice of PTDF in
// shared memory (transposed, so the inner product reads rows of both), and each thread
// accumulates a TMR x TNR sub-tile in registers: TMR + TNR shared loads per TMR * TNR FMAs.

constexpr int GEMM_THREADS = 256;

template <typename T, int BM, int BN, int BK, int TMR, int TNR>
__device__ void gemm_nt(const T* __restrict__ A, const T* __restrict__ B, T* __restrict__ C,
                        int S, int M, int N)
{
    static_assert((BM / TMR) * (BN / TNR) == GEMM_THREADS, "one thread per sub-tile");
    __shared__ __align__(16) T As[BK][BM];
    __shared__ __align__(16) T Bs[BK][BN];
    const int tid = threadIdx.x;
    const int tx = tid % (BN / TNR);  // column group
    const int ty = tid / (BN / TNR);  // row group
    const int s0 = blockIdx.y * BM;
    const int m0 = blockIdx.x * BN;
    T acc[TMR][TNR];
#pragma unroll
    for (int i = 0; i < TMR; ++i)
#pragma unroll
        for (int j = 0; j < TNR; ++j) acc[i][j] = T(0);

    for (int n0 = 0; n0 < N; n0 += BK) {
        // stage the slices; consecutive threads read consecutive n of one row (coalesced)
#pragma unroll
        for (int e = tid; e < BM * BK; e += GEMM_THREADS) {
            const int r = e / BK, kk = e % BK;
            const int s = s0 + r, n = n0 + kk;
            As[kk][r] = (s < S && n < N) ? A[(size_t)s * N + n] : T(0);
        }
#pragma unroll
        for (int e = tid; e < BN * BK; e += GEMM_THREADS) {
            const int r = e / BK, kk = e % BK;
            const int m = m0 + r, n = n0 + kk;
            Bs[kk][r] = (m < M && n < N) ? B[(size_t)m * N + n] : T(0);
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            T a[TMR], b[TNR];
#pragma unroll
            for (int i = 0; i < TMR; ++i) a[i] = As[kk][ty * TMR + i];
#pragma unroll
            for (int j = 0; j < TNR; ++j) b[j] = Bs[kk][tx * TNR + j];
#pragma unroll
            for (int i = 0; i < TMR; ++i)
#pragma unroll
                for (int j = 0; j < TNR; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TMR; ++i) {
        const int s = s0 + ty * TMR + i;
        if (s >= S) continue;
#pragma unroll
        for (int j = 0; j < TNR; ++j) {
            const int m = m0 + tx * TNR + j;
            if (m < M) C[(size_t)s * M + m] = acc[i][j];
        }
    }
}

#define PTDF_GEMM(T, NAME, BM, BN, BK, TMR, TNR)                                                 \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                   \
        NAME(const T* P, const T* ptdf, T* F, int S, int M, int N)                               \
    {                                                                                            \
        gemm_nt<T, BM, BN, BK, TMR, TNR>(P, ptdf, F, S, M, N);                                   \
    }

// many scenarios: 128 x 128 tiles; few scenarios (the hours of a day): 32 x 32 tiles, so that
// the branches alone give enough blocks to fill the GPU
PTDF_GEMM(float, ptdf_gemm_f32_128x128, 128, 128, 8, 8, 8)
PTDF_GEMM(float, ptdf_gemm_f32_32x32, 32, 32, 32, 2, 2)
PTDF_GEMM(double, ptdf_gemm_f64_128x128, 128, 128, 8, 8, 8)
PTDF_GEMM(double, ptdf_gemm_f64_32x32, 32, 32, 32, 2, 2)
