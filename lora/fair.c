/*
 * lora/fair.c — factored Gram quantities of a matrix across clients and the
 * LoRA-FAIR correction (gradient and ridge). See lora/fair.h.
 *
 * Does not: touch an out x in matrix, or choose weights (the caller's p).
 * Work is in double; BLAS (OpenBLAS dsyrk/dgemm) does the O(K^2 r^2 (in+out))
 * Gram products and LAPACK dsyev the r x r eigen-decomposition.
 */
#include "lora/fair.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

/* LAPACK (shipped inside libopenblas): gfortran ABI with hidden string
 * lengths at the end. */
extern void dsyev_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                   double *w, double *work, const int *lwork, int *info, size_t ljobz,
                   size_t luplo);

int lora_gram_init(lora_gram *g, int K, int r, int out, int in)
{
	size_t kr, k1r;
	memset(g, 0, sizeof *g);
	if (K <= 0 || r <= 0 || out <= 0 || in <= 0)
		return FL_EINVAL;
	g->maxK = K;
	g->r = r;
	g->maxout = out;
	g->maxin = in;
	kr = (size_t)K * r;
	k1r = (size_t)(K + 1) * r;
	/* fewer flops, and less memory, than the Gram route (see fair.h) */
	g->dense = 2.0 * out * in <= (double)kr * ((double)out + in);
	if (g->dense) {
		g->D = malloc((size_t)out * in * sizeof(double));
	} else {
		g->GA = malloc(k1r * k1r * sizeof(double));
		g->GB = malloc(kr * kr * sizeof(double));
		g->S = malloc(kr * r * sizeof(double));
	}
	g->M = malloc((size_t)out * r * sizeof(double));
	g->G = malloc((size_t)r * r * sizeof(double));
	g->V = malloc(k1r * in * sizeof(double));
	g->U = malloc((size_t)out * kr * sizeof(double));
	g->T = malloc((size_t)out * r * sizeof(double));
	if ((g->dense ? !g->D : (!g->GA || !g->GB || !g->S)) || !g->M || !g->G || !g->V || !g->U ||
	    !g->T) {
		lora_gram_fini(g);
		return FL_ENOMEM;
	}
	return 0;
}

void lora_gram_fini(lora_gram *g)
{
	free(g->GA);
	free(g->GB);
	free(g->D);
	free(g->M);
	free(g->G);
	free(g->V);
	free(g->U);
	free(g->S);
	free(g->T);
	memset(g, 0, sizeof *g);
}

/* Copies the upper triangle of the n x n row-major S onto its lower one. */
static void mirror_upper(double *S, int n)
{
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			S[(size_t)j * n + i] = S[(size_t)i * n + j];
}

/* The dense route of lora_gram_compute, with V and U filled: D = U' V' where
 * U' is U with client k's columns scaled by p_k and V' the first K r rows of
 * V; then dw2 = ||D||^2, M = D A_x^T, G = A_x A_x^T (A_x: the last r rows
 * of V). */
static int dense_compute(lora_gram *g, int K, int out, int in, const double *p)
{
	const int r = g->r, kr = K * r;
	const double *Ax = g->V + (size_t)kr * in;
	double dw2 = 0;

	for (int i = 0; i < out; i++)
		for (int a = 0; a < kr; a++)
			g->U[(size_t)i * kr + a] *= p[a / r];
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, in, kr, 1.0, g->U, kr, g->V, in,
	            0.0, g->D, in);
	for (size_t i = 0; i < (size_t)out * in; i++)
		dw2 += g->D[i] * g->D[i];
	g->dw2 = dw2;
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, r, in, 1.0, g->D, in, Ax, in, 0.0,
	            g->M, r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r, r, in, 1.0, Ax, in, Ax, in, 0.0,
	            g->G, r);
	return 0;
}

int lora_gram_compute(lora_gram *g, int K, int out, int in, const float *const *A,
                      const float *const *B, const double *p, const float *Ax)
{
	const int r = g->r, kr = K * r, k1r = (K + 1) * r;

	if (K <= 0 || K > g->maxK || out <= 0 || out > g->maxout || in <= 0 || in > g->maxin)
		return FL_EINVAL;
	g->K = K;
	g->out = out;
	g->in = in;
	/* V = [A_1; ...; A_K; A_x]: (K+1)r x in */
	for (int k = 0; k <= K; k++) {
		const float *src = k < K ? A[k] : Ax;
		double *dst = g->V + (size_t)k * r * in;
		for (size_t i = 0; i < (size_t)r * in; i++)
			dst[i] = src[i];
	}
	/* U = [B_1 ... B_K]: out x Kr */
	for (int i = 0; i < out; i++)
		for (int k = 0; k < K; k++) {
			const float *src = B[k] + (size_t)i * r;
			double *dst = g->U + (size_t)i * kr + (size_t)k * r;
			for (int a = 0; a < r; a++)
				dst[a] = src[a];
		}
	if (g->dense)
		return dense_compute(g, K, out, in, p);
	cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, k1r, in, 1.0, g->V, in, 0.0, g->GA,
	            k1r);
	mirror_upper(g->GA, k1r);
	cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, kr, out, 1.0, g->U, kr, 0.0, g->GB, kr);
	mirror_upper(g->GB, kr);
	/* ||dW||^2 = sum_{a,b} P_a P_b GB[a][b] GA[a][b] over the K client blocks */
	double dw2 = 0;
	for (int a = 0; a < kr; a++) {
		double pa = p[a / r], row = 0;
		const double *gb = g->GB + (size_t)a * kr, *ga = g->GA + (size_t)a * k1r;
		for (int b = 0; b < kr; b++)
			row += p[b / r] * gb[b] * ga[b];
		dw2 += pa * row;
	}
	g->dw2 = dw2;
	/* S = [p_1 A_1 A_x^T; ...; p_K A_K A_x^T] (Kr x r), M = U S (out x r) */
	for (int a = 0; a < kr; a++)
		for (int b = 0; b < r; b++)
			g->S[(size_t)a * r + b] = p[a / r] * g->GA[(size_t)a * k1r + kr + b];
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, r, kr, 1.0, g->U, kr, g->S, r,
	            0.0, g->M, r);
	for (int a = 0; a < r; a++)
		for (int b = 0; b < r; b++)
			g->G[(size_t)a * r + b] = g->GA[(size_t)(kr + a) * k1r + kr + b];
	return 0;
}

double lora_gram_inner(const lora_gram *g, const double *Bx)
{
	double s = 0;
	for (size_t i = 0; i < (size_t)g->out * g->r; i++)
		s += g->M[i] * Bx[i];
	return s;
}

double lora_gram_sqnorm(const lora_gram *g, const double *Bx)
{
	double q = 0;
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->out, g->r, g->r, 1.0, Bx, g->r,
	            g->G, g->r, 0.0, g->T, g->r);
	for (size_t i = 0; i < (size_t)g->out * g->r; i++)
		q += g->T[i] * Bx[i];
	return q;
}

double lora_fair_objective(const double *M, const double *G, double dw_norm, const double *B0,
                           const double *dB, int out, int r, double lambda, double *grad)
{
	size_t n = (size_t)out * r;
	double *Bp, *T, s = 0, q = 0, d2 = 0, f = NAN, nq, kappa;

	Bp = calloc(2 * n, sizeof *Bp);
	if (!Bp)
		return NAN;
	T = Bp + n;
	for (size_t i = 0; i < n; i++) {
		Bp[i] = B0[i] + dB[i];
		s += M[i] * Bp[i];
		d2 += dB[i] * dB[i];
	}
	/* T = B' G (out x r) */
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, r, r, 1.0, Bp, r, G, r, 0.0, T,
	            r);
	for (size_t i = 0; i < n; i++)
		q += T[i] * Bp[i];
	if (dw_norm > 0 && q > 0) {
		nq = sqrt(q);
		kappa = s / (dw_norm * q * nq);
		f = 1.0 - s / (dw_norm * nq) + lambda * d2;
		if (grad)
			for (size_t i = 0; i < n; i++)
				grad[i] =
				    -M[i] / (dw_norm * nq) + kappa * T[i] + 2.0 * lambda * dB[i];
	}
	free(Bp);
	return f;
}

int lora_sym_eig(const double *S, int r, double *w, double *Q)
{
	double *a = malloc((size_t)r * r * sizeof *a), wq;
	double *work = NULL;
	int lwork = -1, info = 0;
	if (!a)
		return FL_ENOMEM;
	memcpy(a, S, (size_t)r * r * sizeof *a); /* symmetric: row- and column-major agree */
	dsyev_("V", "U", &r, a, &r, w, &wq, &lwork, &info, 1, 1);
	if (info != 0)
		goto bad;
	lwork = (int)wq;
	work = malloc((size_t)lwork * sizeof *work);
	if (!work) {
		free(a);
		return FL_ENOMEM;
	}
	dsyev_("V", "U", &r, a, &r, w, work, &lwork, &info, 1, 1);
	if (info != 0)
		goto bad;
	/* column-major a: eigenvector j is a[j*r .. j*r + r) */
	for (int i = 0; i < r; i++)
		for (int j = 0; j < r; j++)
			Q[(size_t)i * r + j] = a[(size_t)j * r + i];
	free(a);
	free(work);
	return 0;
bad:
	free(a);
	free(work);
	return FL_ENOTSUP;
}

/* The reduced problem: per column j of the eigenbasis, dB~_j = a_j m_j + b_j c_j
 * with m = M Q, c = B0 Q; mm, mc, cc their per-column inner products and w
 * the eigenvalues of G. */
typedef struct fair_red {
	int r;
	const double *mm, *mc, *cc, *w;
	double nw, lambda;
} fair_red;

/* s = <M, B'>, q = tr(B' G B'^T), f = objective, at coefficients (a, b). */
static double red_eval(const fair_red *R, const double *a, const double *b, double *s_out,
                       double *q_out)
{
	double s = 0, q = 0, d2 = 0;
	for (int j = 0; j < R->r; j++) {
		double b1 = 1.0 + b[j];
		s += a[j] * R->mm[j] + b1 * R->mc[j];
		q += R->w[j] *
		     (a[j] * a[j] * R->mm[j] + 2.0 * a[j] * b1 * R->mc[j] + b1 * b1 * R->cc[j]);
		d2 +=
		    a[j] * a[j] * R->mm[j] + 2.0 * a[j] * b[j] * R->mc[j] + b[j] * b[j] * R->cc[j];
	}
	*s_out = s;
	*q_out = q;
	if (!(q > 0))
		return NAN;
	return 1.0 - s / (R->nw * sqrt(q)) + R->lambda * d2;
}

int lora_fair_solve(const double *M, const double *G, double dw_norm, const double *B0, int out,
                    int r, double lambda, int steps, double lr, double *dB, double *f0, double *f1)
{
	size_t n = (size_t)out * r;
	double *w = NULL, *Q = NULL, *Mt = NULL, *Ct = NULL, *buf = NULL;
	double *mm, *mc, *cc, *a, *b, *ta, *tb, *ga, *gb;
	double f, s, q;
	int rv;

	*f0 = *f1 = NAN;
	memset(dB, 0, n * sizeof *dB);
	if (out <= 0 || r <= 0 || steps < 0 || !(lr > 0) || !(lambda >= 0))
		return FL_EINVAL;
	w = malloc((size_t)r * sizeof *w);
	Q = malloc((size_t)r * r * sizeof *Q);
	Mt = malloc(n * sizeof *Mt);
	Ct = malloc(n * sizeof *Ct);
	buf = calloc((size_t)r * 9, sizeof *buf);
	if (!w || !Q || !Mt || !Ct || !buf) {
		rv = FL_ENOMEM;
		goto done;
	}
	mm = buf;
	mc = mm + r;
	cc = mc + r;
	a = cc + r;
	b = a + r;
	ta = b + r;
	tb = ta + r;
	ga = tb + r;
	gb = ga + r;
	if ((rv = lora_sym_eig(G, r, w, Q)) != 0)
		goto done;
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, r, r, 1.0, M, r, Q, r, 0.0, Mt,
	            r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, r, r, 1.0, B0, r, Q, r, 0.0, Ct,
	            r);
	for (int i = 0; i < out; i++)
		for (int j = 0; j < r; j++) {
			double m = Mt[(size_t)i * r + j], c = Ct[(size_t)i * r + j];
			mm[j] += m * m;
			mc[j] += m * c;
			cc[j] += c * c;
		}
	fair_red R = {r, mm, mc, cc, w, dw_norm, lambda};
	f = red_eval(&R, a, b, &s, &q);
	if (!(dw_norm > 0) || isnan(f)) {
		rv = 0; /* cosine undefined: no correction */
		goto done;
	}
	*f0 = f;
	double lr_c = lr;
	for (int it = 0; it < steps; it++) {
		double nq = sqrt(q), kappa = s / (dw_norm * q * nq);
		int accepted = 0;
		for (int j = 0; j < r; j++) {
			ga[j] = -1.0 / (dw_norm * nq) + (kappa * w[j] + 2.0 * lambda) * a[j];
			gb[j] = kappa * w[j] * (1.0 + b[j]) + 2.0 * lambda * b[j];
		}
		for (int tries = 0; tries < 60; tries++) {
			double s2, q2, f2;
			for (int j = 0; j < r; j++) {
				ta[j] = a[j] - lr_c * ga[j];
				tb[j] = b[j] - lr_c * gb[j];
			}
			f2 = red_eval(&R, ta, tb, &s2, &q2);
			if (f2 <= f) {
				memcpy(a, ta, r * sizeof *a);
				memcpy(b, tb, r * sizeof *b);
				f = f2;
				s = s2;
				q = q2;
				accepted = 1;
				break;
			}
			lr_c *= 0.5;
		}
		if (!accepted)
			break; /* no descent at any step size: at a stationary point */
	}
	*f1 = f;
	/* dB = (Mt diag(a) + Ct diag(b)) Q^T */
	for (int i = 0; i < out; i++)
		for (int j = 0; j < r; j++) {
			size_t k = (size_t)i * r + j;
			Mt[k] = a[j] * Mt[k] + b[j] * Ct[k];
		}
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, r, r, 1.0, Mt, r, Q, r, 0.0, dB,
	            r);
	rv = 0;
done:
	free(w);
	free(Q);
	free(Mt);
	free(Ct);
	free(buf);
	return rv;
}

int lora_fair_ridge(const double *M, const double *G, const double *B0, int out, int r,
                    double lambda, double *dB)
{
	size_t n = (size_t)out * r;
	double *w = NULL, *Q = NULL, *Mt = NULL, *Ct = NULL;
	int rv;

	if (out <= 0 || r <= 0 || !(lambda > 0))
		return FL_EINVAL;
	w = malloc((size_t)r * sizeof *w);
	Q = malloc((size_t)r * r * sizeof *Q);
	Mt = malloc(n * sizeof *Mt);
	Ct = malloc(n * sizeof *Ct);
	if (!w || !Q || !Mt || !Ct) {
		rv = FL_ENOMEM;
		goto done;
	}
	if ((rv = lora_sym_eig(G, r, w, Q)) != 0)
		goto done;
	/* in the eigenbasis: dB~ = (M Q - B0 Q diag(w)) diag(1 / (w + lambda)) */
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, r, r, 1.0, M, r, Q, r, 0.0, Mt,
	            r);
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out, r, r, 1.0, B0, r, Q, r, 0.0, Ct,
	            r);
	for (int i = 0; i < out; i++)
		for (int j = 0; j < r; j++) {
			size_t k = (size_t)i * r + j;
			/* G is PSD, so w[j] + lambda >= lambda up to rounding */
			Mt[k] = (Mt[k] - Ct[k] * w[j]) / (w[j] + lambda);
		}
	cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, r, r, 1.0, Mt, r, Q, r, 0.0, dB,
	            r);
	rv = 0;
done:
	free(w);
	free(Q);
	free(Mt);
	free(Ct);
	return rv;
}
