// Batched AC power mismatch: mis[b, i] = V[b, i] * conj((Ybus @ V[b])[i]) - Sbus[(b,) i]
// for B voltage vectors at once; Ybus in CSR (indptr, indices, data), complex as (re, im) pairs.
// One thread per (bus i, vector b): a CSR row times a gathered vector, then the complex
// product with the bus voltage. Vectors beyond gridDim.y are covered by a grid-stride loop.

template <typename T2> struct real_of;
template <> struct real_of<float2> { typedef float type; };
template <> struct real_of<double2> { typedef double type; };

template <typename T2>
__device__ void mismatch_batch(const int* __restrict__ indptr, const int* __restrict__ indices,
                               const T2* __restrict__ data, const T2* __restrict__ V,
                               const T2* __restrict__ sbus, int n, int B, int sbus_batched,
                               T2* __restrict__ out)
{
    typedef typename real_of<T2>::type T;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int j0 = indptr[i], j1 = indptr[i + 1];
    for (int b = blockIdx.y; b < B; b += gridDim.y) {
        const T2* v = V + (size_t)b * n;
        T ir = T(0), ii = T(0);
        for (int j = j0; j < j1; ++j) {
            const T2 y = data[j];
            const T2 x = v[indices[j]];
            ir += y.x * x.x - y.y * x.y;
            ii += y.x * x.y + y.y * x.x;
        }
        const T2 vi = v[i];
        const T2 s = sbus[sbus_batched ? (size_t)b * n + i : (size_t)i];
        T2 r;
        // V * conj(I) = (vr + j vi)(ir - j ii)
        r.x = vi.x * ir + vi.y * ii - s.x;
        r.y = vi.y * ir - vi.x * ii - s.y;
        out[(size_t)b * n + i] = r;
    }
}

extern "C" __global__ void mismatch_c64(const int* indptr, const int* indices, const float2* data,
                                        const float2* V, const float2* sbus, int n, int B,
                                        int sbus_batched, float2* out)
{
    mismatch_batch<float2>(indptr, indices, data, V, sbus, n, B, sbus_batched, out);
}

extern "C" __global__ void mismatch_c128(const int* indptr, const int* indices,
                                         const double2* data, const double2* V,
                                         const double2* sbus, int n, int B, int sbus_batched,
                                         double2* out)
{
    mismatch_batch<double2>(indptr, indices, data, V, sbus, n, B, sbus_batched, out);
}
