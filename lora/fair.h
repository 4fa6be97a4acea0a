/*
 * lora/fair.h — private to lora/: the factored (never out x in) quantities of
 * one adapted matrix across a round's clients, and the LoRA-FAIR correction.
 * Used by lora/aggregate.c; exposed here for tests and benchmarks only.
 *
 * Notation for one matrix (W0 is out x in, rank r, K clients with normalized
 * weights p_k): client factors A_k (r x in), B_k (out x r); a reference A_x
 * (r x in: the new global's A); dW = sum_k p_k B_k A_k (out x in, never built).
 *
 *   GA = V V^T with V = [A_1; ...; A_K; A_x]   ((K+1)r x (K+1)r)
 *   GB = U^T U with U = [B_1 ... B_K]          (Kr x Kr)
 *   G  = A_x A_x^T                              (r x r, the last block of GA)
 *   M  = sum_k p_k B_k (A_k A_x^T)              (out x r)
 *   ||dW||^2     = sum_{k,l} p_k p_l <B_k^T B_l, A_k A_l^T>
 *   <dW, B' A_x> = <M, B'>
 *   ||B' A_x||^2 = tr(B' G B'^T)
 *
 * When dW is the smaller object, the Gram route is not taken: with many
 * clients (K r)^2 outgrows out x in (5,000 clients at r = 4 would need two
 * 3.2 GB Gram matrices for a 4 x 4 layer). lora_gram_init then picks the
 * dense route, which builds D = dW = [p_1 B_1 ... p_K B_K] [A_1; ...; A_K]
 * (one dgemm, O(out K r in)) and takes ||dW||^2 = ||D||^2, M = D A_x^T and
 * G = A_x A_x^T from it: the same M, G and dw2 to double rounding. It is
 * chosen when 2 out in <= K r (out + in), i.e. when it costs fewer flops,
 * which also bounds memory by O(K r (out + in)) either way.
 *
 * Everything is computed in double from the float32 factors (BLAS dsyrk /
 * dgemm), so ||dW - B' A_x||^2 = ||dW||^2 - 2<M,B'> + tr(B'GB'^T) cancels to
 * double rounding, not float rounding.
 *
 * The FAIR objective for B' = B0 + dB (B0 = B_avg, A_x = A_avg) is
 *   f(dB) = 1 - <M, B'> / (||dW|| sqrt(tr(B' G B'^T))) + lambda ||dB||^2.
 * lora_fair_solve runs plain gradient descent on it from dB = 0, with step
 * lr halved (and the step retried) whenever it would increase f, so f never
 * increases. It works in the eigenbasis of G (G = Q diag(w) Q^T): there every
 * column j of dB Q stays in span{(M Q)_j, (B0 Q)_j}, so each step costs O(r)
 * after an O(out r^2) setup; the iterates are exactly those of gradient
 * descent on dB itself (Q is orthogonal), which the tests check against the
 * direct O(out r^2)-per-step evaluation of lora_fair_objective.
 * lora_fair_ridge is the closed form dB = (M - B0 G)(G + lambda I)^-1.
 *
 * Ownership: lora_gram_init allocates the work buffers for the largest shape
 * it will see; lora_gram_fini frees them. Arrays passed in are the caller's.
 */
#ifndef FL_LORA_FAIR_H
#define FL_LORA_FAIR_H

#include <stddef.h>

typedef struct lora_gram {
	int K, r, out, in;       /* shape of the last lora_gram_compute */
	int maxK, maxout, maxin; /* capacity */
	int dense;               /* 1: the dense route (D; no GA, GB) */
	double *GA;              /* (K+1)r x (K+1)r (Gram route) */
	double *GB;              /* Kr x Kr (Gram route) */
	double *D;               /* out x in: dW (dense route) */
	double *M;               /* out x r */
	double *G;               /* r x r */
	double dw2;              /* ||dW||_F^2 */
	double *V, *U, *S, *T;   /* work */
} lora_gram;

/* Buffers for up to K clients of matrices up to out x in at rank r. */
int lora_gram_init(lora_gram *g, int K, int r, int out, int in);
void lora_gram_fini(lora_gram *g);
/* Computes G, M, dw2 (and GA, GB or D, by route) for one matrix: A[k] (r x in) and B[k] (out x r)
 * are client k's factors, p[k] its normalized weight, Ax the reference A.
 * FL_EINVAL if the shape exceeds the capacity. */
int lora_gram_compute(lora_gram *g, int K, int out, int in, const float *const *A,
                      const float *const *B, const double *p, const float *Ax);
/* <M, Bx> and tr(Bx G Bx^T) for an out x r Bx (double). */
double lora_gram_inner(const lora_gram *g, const double *Bx);
double lora_gram_sqnorm(const lora_gram *g, const double *Bx);

/* f(dB) as above, and its gradient (out x r) into grad when not NULL.
 * Returns NaN when ||dW|| or ||B' A_x|| is 0 (cosine undefined). */
double lora_fair_objective(const double *M, const double *G, double dw_norm, const double *B0,
                           const double *dB, int out, int r, double lambda, double *grad);

/* Gradient descent on f from dB = 0 (see above); writes dB (out x r) and the
 * objective before (*f0) and after (*f1). When the cosine is undefined (dW = 0
 * or B0 A_x = 0) dB stays 0 and f0 = f1 = NaN. FL_ENOMEM, FL_EINVAL (bad
 * arguments), FL_ENOTSUP (eigen-decomposition failed). */
int lora_fair_solve(const double *M, const double *G, double dw_norm, const double *B0, int out,
                    int r, double lambda, int steps, double lr, double *dB, double *f0, double *f1);

/* Closed-form ridge correction dB = (M - B0 G)(G + lambda I)^-1, lambda > 0. */
int lora_fair_ridge(const double *M, const double *G, const double *B0, int out, int r,
                    double lambda, double *dB);

/* Symmetric eigen-decomposition of the r x r matrix S: S = Q diag(w) Q^T,
 * Q row-major with eigenvectors in its columns. FL_ENOTSUP if LAPACK fails. */
int lora_sym_eig(const double *S, int r, double *w, double *Q);

#endif
