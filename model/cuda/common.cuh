/*
 * model/cuda/common.cuh — what every CUDA file of the trainer shares: the
 * checked-call macros, bf16 helpers, and row-major GEMM wrappers over cuBLAS.
 *
 * Error policy: the trainer is library code, so a failed CUDA or cuBLAS call
 * never exits. CU_TRY / CUBLAS_TRY log "file:line: call: error text" with tag
 * "cuda" and jump to the enclosing function's `fail:` label with rv =
 * FL_ECUDA; kernel launches are followed by CU_TRY(cudaGetLastError()).
 * Functions that cannot fail report through an int anyway (fl_cuda_check
 * keeps the first error of a sequence of launches).
 *
 * GEMMs: everything in the project is row-major; cuBLAS is column-major. A
 * row-major matrix X (m x n, leading dimension ld) is the column-major X^T, so
 * C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T in column-major:
 * gemm_rm swaps the operands and passes the transposes unchanged. Inputs are
 * bf16, accumulation is float32 (CUBLAS_COMPUTE_32F), outputs bf16 or float32.
 */
#ifndef FL_MODEL_CUDA_COMMON_CUH
#define FL_MODEL_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "core/err.h"
#include "core/log.h"
}

typedef __nv_bfloat16 bf16;

#define CU_TRY(call)                                                                               \
	do {                                                                                       \
		cudaError_t e_ = (call);                                                           \
		if (e_ != cudaSuccess) {                                                           \
			fl_log(FL_LOG_ERROR, "cuda", "%s:%d: %s: %s", __FILE__, __LINE__, #call,   \
			       cudaGetErrorString(e_));                                            \
			rv = FL_ECUDA;                                                             \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)

#define CUBLAS_TRY(call)                                                                           \
	do {                                                                                       \
		cublasStatus_t s_ = (call);                                                        \
		if (s_ != CUBLAS_STATUS_SUCCESS) {                                                 \
			fl_log(FL_LOG_ERROR, "cuda", "%s:%d: %s: cuBLAS %s", __FILE__, __LINE__,   \
			       #call, cublasGetStatusString(s_));                                  \
			rv = FL_ECUDA;                                                             \
			goto fail;                                                                 \
		}                                                                                  \
	} while (0)

/* Launch check: the launch configuration error, if any (not the kernel's run). */
#define CU_LAUNCHED() CU_TRY(cudaGetLastError())

static inline int fl_cdiv(long a, long b)
{
	return (int)((a + b - 1) / b);
}

/* Row-major C (M x N) = alpha * op(A) op(B) + beta * C, op(A) (M x K), op(B)
 * (K x N); ta/tb: the stored A is (K x M) / B is (N x K) and is transposed.
 * lda/ldb/ldc are the row lengths of the stored matrices. A, B bf16; C of type
 * ctype (CUDA_R_16BF or CUDA_R_32F). batch > 1: strided batched with element
 * strides sa, sb, sc. Returns 0 or FL_ECUDA (logged with the caller's line). */
int fl_gemm_rm(cublasHandle_t h, int ta, int tb, int M, int N, int K, float alpha, const bf16 *A,
               int lda, long long sa, const bf16 *B, int ldb, long long sb, float beta, void *C,
               cudaDataType ctype, int ldc, long long sc, int batch, const char *file, int line);
#define GEMM(h, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ctype, ldc)                       \
	fl_gemm_rm(h, ta, tb, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta, C, ctype, ldc, 0, 1,     \
	           __FILE__, __LINE__)
#define GEMM_BATCHED(h, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ctype, ldc, sc,   \
                     batch)                                                                        \
	fl_gemm_rm(h, ta, tb, M, N, K, alpha, A, lda, sa, B, ldb, sb, beta, C, ctype, ldc, sc,     \
	           batch, __FILE__, __LINE__)
#define GEMM_TRY(expr)                                                                             \
	do {                                                                                       \
		if ((rv = (expr)) != 0)                                                            \
			goto fail;                                                                 \
	} while (0)

/* Host-side bf16 conversion, round to nearest even (NaN kept as NaN). */
static inline uint16_t fl_f32_to_bf16_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}
static inline float fl_bf16_bits_to_f32(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}

#endif
