/*
 * model/linreg.c — the "linreg" task: a frozen multi-layer linear model with
 * a LoRA pair on every layer, synthetic per-client data with low-rank shifts
 * (see model/linreg.h for the model and the data), local training by
 * minibatch SGD or AdamW on squared error, and sample-level DP-SGD (Poisson sampling,
 * per-example gradients, clip, noise) through privacy/dp.h.
 *
 * Float32 with OpenBLAS GEMMs; gradients are analytic (checked against
 * finite differences in tests/linreg_test.c). Memory: one allocation for the
 * frozen weights, one for the data, one workspace for activations and
 * batches (grown to the largest batch seen), one for gradient and optimizer
 * state, one for per-example gradient rows under DP.
 *
 * Not here: anything about the network; the held-out loss is the client's
 * own distribution (the coordinator combines clients' reports).
 */
#include "model/linreg.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/err.h"
#include "core/rng.h"
#include "model/task_impl.h"
#include "privacy/dp.h"

/* fl_rng streams: every random quantity has its own. */
#define LR_STREAM_W0     0x11000000ull
#define LR_STREAM_SHARED 0x12000000ull
#define LR_STREAM_CLIENT 0x13000000ull
#define LR_STREAM_DATA   0x14000000ull
#define LR_STREAM_BATCH  0x15000000ull

#define LR_MAX_LAYERS  64
#define LR_MAX_DIM     4096
#define LR_MAX_SAMPLES 10000000L
#define LR_EVAL_CHUNK  256

struct model_linreg {
	int L, d, r; /* layers, width, LoRA rank */
	float alpha;
	int client; /* -1: shape only */
	long n_train, n_eval;
	float *w0;   /* L x d x d */
	float *data; /* x_train, y_train, x_eval, y_eval */
	float *xtr, *ytr, *xev, *yev;
	/* workspace for `cap` rows: H (L+1) x cap x d (H_0 = batch input),
	 * U L x cap x r, G two cap x d, dU cap x r, Y cap x d */
	int cap;
	float *work;
	float *H, *U, *G0, *G1, *dU, *Yb;
	/* gradient (n_a+n_b), Adam m and v (n_a+n_b each), one example's grad */
	size_t np;
	float *opt;
	float *grad, *m1, *m2, *g1;
	/* per-example rows under DP (rows x P), capacity in floats */
	size_t pex_cap;
	float *pex;
};

/* Fills a (rows x cols) with N(0,1) * scale. */
static void fill_normal(fl_rng *g, float *a, size_t count, double scale)
{
	for (size_t i = 0; i < count; i++)
		a[i] = (float)(fl_rng_normal(g) * scale);
}

/* W += scale * U V^T with U, V (d x k) N(0, 1/d) entries (spectral norm of
 * each rank-1 term about `scale`), drawn from stream `stream`. */
static int add_low_rank(float *W, int d, int k, double scale, uint64_t seed, uint64_t stream)
{
	fl_rng g;
	float *u = malloc((size_t)2 * d * k * sizeof(float));
	if (!u)
		return FL_ENOMEM;
	fl_rng_init(&g, seed, stream);
	fill_normal(&g, u, (size_t)2 * d * k, 1.0 / sqrt((double)d));
	/* W (d x d) += scale * U (d x k) V^T (k x d) */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, k, (float)scale, u, k,
	            u + (size_t)d * k, k, 1.0f, W, d);
	free(u);
	return 0;
}

/* Computes Y (n x d) = prod_l T_l X for the client's true layers T_l. */
static int make_targets(const float *T, int L, int d, const float *X, long n, float *Y)
{
	float *a = malloc((size_t)2 * n * d * sizeof(float)), *b, *t;
	if (!a)
		return FL_ENOMEM;
	b = a + (size_t)n * d;
	memcpy(a, X, (size_t)n * d * sizeof(float));
	for (int l = 0; l < L; l++) {
		/* b (n x d) = a (n x d) T_l^T */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, d, d, 1.0f, a, d,
		            T + (size_t)l * d * d, d, 0.0f, b, d);
		t = a;
		a = b;
		b = t;
	}
	memcpy(Y, a, (size_t)n * d * sizeof(float));
	free(a < b ? a : b);
	return 0;
}

void model_linreg_close(model_linreg *m)
{
	if (!m)
		return;
	free(m->w0);
	free(m->data);
	free(m->work);
	free(m->opt);
	free(m->pex);
	free(m);
}

int model_linreg_open(model_linreg **out, const model_task_opts *o)
{
	model_linreg *m;
	float *T = NULL;
	size_t dd;
	int rv = FL_ENOMEM;

	*out = NULL;
	if (o->linreg_layers < 1 || o->linreg_layers > LR_MAX_LAYERS || o->linreg_dim < 1 ||
	    o->linreg_dim > LR_MAX_DIM || o->rank < 1 || o->rank > o->linreg_dim ||
	    !(o->alpha > 0) || o->linreg_samples < 1 || o->linreg_samples > LR_MAX_SAMPLES ||
	    o->client_index < -1)
		return FL_EINVAL;
	m = calloc(1, sizeof *m);
	if (!m)
		return FL_ENOMEM;
	m->L = o->linreg_layers;
	m->d = o->linreg_dim;
	m->r = o->rank;
	m->alpha = (float)o->alpha;
	m->client = o->client_index;
	m->np = (size_t)m->L * 2 * m->d * m->r;
	if (m->client < 0) {
		*out = m; /* the coordinator needs the shape only */
		return 0;
	}
	dd = (size_t)m->d * m->d;
	m->n_train = o->linreg_samples;
	m->n_eval = o->linreg_samples / 2 > 128 ? o->linreg_samples / 2 : 128;
	m->w0 = malloc((size_t)m->L * dd * sizeof(float));
	T = malloc((size_t)m->L * dd * sizeof(float));
	m->data = malloc((size_t)2 * (m->n_train + m->n_eval) * m->d * sizeof(float));
	if (!m->w0 || !T || !m->data)
		goto fail;
	m->xtr = m->data;
	m->ytr = m->xtr + (size_t)m->n_train * m->d;
	m->xev = m->ytr + (size_t)m->n_train * m->d;
	m->yev = m->xev + (size_t)m->n_eval * m->d;

	/* frozen W0_l = I + spread * G / sqrt(d): well conditioned through L layers */
	for (int l = 0; l < m->L; l++) {
		fl_rng g;
		float *W = m->w0 + (size_t)l * dd;
		fl_rng_init(&g, o->seed, LR_STREAM_W0 + (uint64_t)l);
		fill_normal(&g, W, dd, MODEL_LINREG_W0_SPREAD / sqrt((double)m->d));
		for (int i = 0; i < m->d; i++)
			W[(size_t)i * m->d + i] += 1.0f;
	}
	/* the client's true layers T_l = W0_l + D_l + E_{k,l} */
	memcpy(T, m->w0, (size_t)m->L * dd * sizeof(float));
	for (int l = 0; l < m->L; l++) {
		float *Tl = T + (size_t)l * dd;
		int k = MODEL_LINREG_SHIFT_RANK < m->d ? MODEL_LINREG_SHIFT_RANK : m->d;
		if ((rv = add_low_rank(Tl, m->d, k, MODEL_LINREG_SHARED_SCALE, o->seed,
		                       LR_STREAM_SHARED + (uint64_t)l)) != 0)
			goto fail;
		if ((rv = add_low_rank(Tl, m->d, k, MODEL_LINREG_CLIENT_SCALE, o->seed,
		                       LR_STREAM_CLIENT + (uint64_t)m->client * LR_MAX_LAYERS +
		                           (uint64_t)l)) != 0)
			goto fail;
	}
	{
		fl_rng g;
		fl_rng_init(&g, o->seed, LR_STREAM_DATA + (uint64_t)m->client);
		fill_normal(&g, m->xtr, (size_t)m->n_train * m->d, 1.0);
		fill_normal(&g, m->xev, (size_t)m->n_eval * m->d, 1.0);
		if ((rv = make_targets(T, m->L, m->d, m->xtr, m->n_train, m->ytr)) != 0 ||
		    (rv = make_targets(T, m->L, m->d, m->xev, m->n_eval, m->yev)) != 0)
			goto fail;
		for (size_t i = 0; i < (size_t)m->n_train * m->d; i++)
			m->ytr[i] += (float)(MODEL_LINREG_NOISE_STD * fl_rng_normal(&g));
		for (size_t i = 0; i < (size_t)m->n_eval * m->d; i++)
			m->yev[i] += (float)(MODEL_LINREG_NOISE_STD * fl_rng_normal(&g));
	}
	free(T);
	*out = m;
	return 0;
fail:
	free(T);
	model_linreg_close(m);
	return rv;
}

void model_linreg_view_get(const model_linreg *m, model_linreg_view *v)
{
	v->layers = m->L;
	v->dim = m->d;
	v->n_train = m->n_train;
	v->n_eval = m->n_eval;
	v->w0 = m->w0;
	v->x_train = m->xtr;
	v->y_train = m->ytr;
	v->x_eval = m->xev;
	v->y_eval = m->yev;
}

/* 1 when ad has this task's shape: names layers.{l}, d x d, rank r. */
static int shape_ok(const model_linreg *m, const lora_adapter *ad)
{
	char name[32];
	if (ad->n != m->L || ad->r != m->r)
		return 0;
	for (int l = 0; l < m->L; l++) {
		snprintf(name, sizeof name, "layers.%d", l);
		if (strcmp(ad->mats[l].name, name) || ad->mats[l].in != m->d ||
		    ad->mats[l].out != m->d)
			return 0;
	}
	return 1;
}

/* Grows the activation workspace to hold n rows. */
static int work_reserve(model_linreg *m, long n)
{
	size_t L = m->L, d = m->d, r = m->r, c, total;
	float *w;
	if (n <= m->cap)
		return 0;
	if (n > LR_MAX_SAMPLES)
		return FL_ETOOBIG;
	c = (size_t)n;
	total = (L + 1) * c * d + L * c * r + 2 * c * d + c * r + c * d;
	w = realloc(m->work, total * sizeof(float));
	if (!w)
		return FL_ENOMEM;
	m->work = w;
	m->cap = (int)n;
	m->H = w;
	m->U = m->H + (L + 1) * c * d;
	m->G0 = m->U + L * c * r;
	m->G1 = m->G0 + c * d;
	m->dU = m->G1 + c * d;
	m->Yb = m->dU + c * r;
	return 0;
}

static int opt_reserve(model_linreg *m)
{
	if (m->opt)
		return 0;
	m->opt = malloc(4 * m->np * sizeof(float));
	if (!m->opt)
		return FL_ENOMEM;
	m->grad = m->opt;
	m->m1 = m->grad + m->np;
	m->m2 = m->m1 + m->np;
	m->g1 = m->m2 + m->np;
	return 0;
}

static inline float *H_at(const model_linreg *m, int l)
{
	return m->H + (size_t)l * m->cap * m->d;
}
static inline float *U_at(const model_linreg *m, int l)
{
	return m->U + (size_t)l * m->cap * m->r;
}

/* Forward of the n rows held in H_0 (n <= cap): fills H_1..H_L and U_l.
 * H_l is (n x d), W0_l (d x d), A_l (r x d), B_l (d x r), U_l = H_l A_l^T (n x r). */
static void forward(model_linreg *m, const lora_adapter *ad, int n)
{
	int d = m->d, r = m->r;
	float s = lora_adapter_scale(ad);
	for (int l = 0; l < m->L; l++) {
		const float *Hl = H_at(m, l), *A = ad->mats[l].A, *B = ad->mats[l].B;
		float *Hn = H_at(m, l + 1), *Ul = U_at(m, l);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, d, 1.0f, Hl, d,
		            m->w0 + (size_t)l * d * d, d, 0.0f, Hn, d);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, d, 1.0f, Hl, d, A, d,
		            0.0f, Ul, r);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, d, r, s, Ul, r, B, r, 1.0f,
		            Hn, d);
	}
}

/* Sum over rows r0..r0+n of sum_j (H_L - Y)^2 (Y rows in m->Yb). */
static double sq_error(const model_linreg *m, int r0, int n)
{
	const float *out = H_at(m, m->L) + (size_t)r0 * m->d, *y = m->Yb + (size_t)r0 * m->d;
	double acc = 0;
	for (size_t i = 0; i < (size_t)n * m->d; i++) {
		double e = (double)out[i] - y[i];
		acc += e * e;
	}
	return acc;
}

/* Backward of rows r0..r0+n of the last forward, for the loss
 * gscale * sum_rows 0.5 * sum_j (H_L - Y)^2. ADDS dA (when train_a) and dB into
 * grad (adapter layout). Uses G0, G1 and dU from row 0 (n rows). */
static void backward(model_linreg *m, const lora_adapter *ad, int r0, int n, double gscale,
                     int train_a, float *grad)
{
	int d = m->d, r = m->r;
	float s = lora_adapter_scale(ad);
	float *G = m->G0, *Gn = m->G1, *t;
	const float *out = H_at(m, m->L) + (size_t)r0 * d, *y = m->Yb + (size_t)r0 * d;
	float c = (float)gscale;

	/* G = dLoss/dH_L (n x d) */
	for (size_t i = 0; i < (size_t)n * d; i++)
		G[i] = c * (out[i] - y[i]);
	for (int l = m->L - 1; l >= 0; l--) {
		const lora_mat *mt = &ad->mats[l];
		const float *Hl = H_at(m, l) + (size_t)r0 * d, *Ul = U_at(m, l) + (size_t)r0 * r;
		float *dA = grad + (mt->A - ad->params), *dB = grad + (mt->B - ad->params);
		/* dB (d x r) += s G^T (d x n) U_l (n x r) */
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, r, n, s, G, d, Ul, r, 1.0f,
		            dB, r);
		/* dU (n x r) = s G (n x d) B (d x r) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, d, s, G, d, mt->B, r,
		            0.0f, m->dU, r);
		/* dA (r x d) += dU^T (r x n) H_l (n x d) */
		if (train_a)
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, d, n, 1.0f, m->dU,
			            r, Hl, d, 1.0f, dA, d);
		if (l == 0)
			break;
		/* G_l (n x d) = G W0_l (n x d)(d x d) + dU A (n x r)(r x d) */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, d, 1.0f, G, d,
		            m->w0 + (size_t)l * d * d, d, 0.0f, Gn, d);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, r, 1.0f, m->dU, r,
		            mt->A, d, 1.0f, Gn, d);
		t = G;
		G = Gn;
		Gn = t;
	}
}

/* Copies training rows idx[0..n) into H_0 and Yb. */
static int gather(model_linreg *m, const long *idx, long n)
{
	int rv;
	if ((rv = work_reserve(m, n)) != 0)
		return rv;
	for (long i = 0; i < n; i++) {
		if (idx[i] < 0 || idx[i] >= m->n_train)
			return FL_EINVAL;
		memcpy(H_at(m, 0) + (size_t)i * m->d, m->xtr + (size_t)idx[i] * m->d,
		       m->d * sizeof(float));
		memcpy(m->Yb + (size_t)i * m->d, m->ytr + (size_t)idx[i] * m->d,
		       m->d * sizeof(float));
	}
	return 0;
}

static int check_ready(const model_linreg *m, const lora_adapter *ad)
{
	if (m->client < 0)
		return FL_ESTATE;
	return shape_ok(m, ad) ? 0 : FL_ESHAPE;
}

int model_linreg_loss_grad(model_linreg *m, const lora_adapter *ad, const long *idx, int n,
                           int train_a, double *loss, float *grad)
{
	int rv;
	if ((rv = check_ready(m, ad)) != 0)
		return rv;
	if (n < 1)
		return FL_EINVAL;
	if ((rv = gather(m, idx, n)) != 0)
		return rv;
	forward(m, ad, n);
	*loss = 0.5 * sq_error(m, 0, n) / n;
	memset(grad, 0, m->np * sizeof(float));
	backward(m, ad, 0, n, 1.0 / n, train_a, grad);
	return 0;
}

/* Per-example gradient rows after gather + forward of n rows. */
static int example_rows(model_linreg *m, const lora_adapter *ad, int n, int train_a, float *g)
{
	int rv;
	size_t off = train_a ? 0 : ad->n_a, P = m->np - off;
	if ((rv = opt_reserve(m)) != 0)
		return rv;
	for (int i = 0; i < n; i++) {
		memset(m->g1, 0, m->np * sizeof(float));
		backward(m, ad, i, 1, 1.0, train_a, m->g1);
		memcpy(g + (size_t)i * P, m->g1 + off, P * sizeof(float));
	}
	return 0;
}

int model_linreg_example_grads(model_linreg *m, const lora_adapter *ad, const long *idx, int n,
                               int train_a, float *g)
{
	int rv;
	if ((rv = check_ready(m, ad)) != 0)
		return rv;
	if (n < 1)
		return FL_EINVAL;
	if ((rv = gather(m, idx, n)) != 0)
		return rv;
	forward(m, ad, n);
	return example_rows(m, ad, n, train_a, g);
}

static int lr_eval(model_linreg *m, const lora_adapter *ad, double *loss)
{
	double acc = 0;
	int rv;
	if ((rv = check_ready(m, ad)) != 0)
		return rv;
	if ((rv = work_reserve(m, LR_EVAL_CHUNK)) != 0)
		return rv;
	for (long i0 = 0; i0 < m->n_eval; i0 += LR_EVAL_CHUNK) {
		int n = (int)(m->n_eval - i0 < LR_EVAL_CHUNK ? m->n_eval - i0 : LR_EVAL_CHUNK);
		memcpy(H_at(m, 0), m->xev + (size_t)i0 * m->d, (size_t)n * m->d * sizeof(float));
		memcpy(m->Yb, m->yev + (size_t)i0 * m->d, (size_t)n * m->d * sizeof(float));
		forward(m, ad, n);
		acc += sq_error(m, 0, n);
	}
	*loss = 0.5 * acc / m->n_eval;
	return 0;
}

/* One optimizer step on params[off .. off+P) with gradient grad[0..P). */
static void opt_step(model_linreg *m, float *params, const float *grad, size_t P,
                     const model_train_params *p, int t)
{
	float lr = (float)p->lr, wd = (float)p->weight_decay;
	if (p->optimizer == 1) {
		const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
		float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
		for (size_t j = 0; j < P; j++) {
			float g = grad[j];
			m->m1[j] = b1 * m->m1[j] + (1 - b1) * g;
			m->m2[j] = b2 * m->m2[j] + (1 - b2) * g * g;
			params[j] -=
			    lr * ((m->m1[j] / c1) / (sqrtf(m->m2[j] / c2) + eps) + wd * params[j]);
		}
	} else {
		for (size_t j = 0; j < P; j++)
			params[j] -= lr * (grad[j] + wd * params[j]);
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int lr_train(model_linreg *m, lora_adapter *ad, const model_train_params *p,
                    priv_noise *noise, model_train_result *res)
{
	size_t off = p->train_a ? 0 : ad->n_a, P = m->np - off;
	int dp = p->dp_clip > 0, rv;
	long *idx = NULL, pos = 0, seen = 0;
	double loss_sum = 0, t0 = now_s();
	int loss_n = 0;
	fl_rng g;

	memset(res, 0, sizeof *res);
	if ((rv = check_ready(m, ad)) != 0)
		return rv;
	if (p->local_steps < 0 || !(p->lr >= 0) || !(p->weight_decay >= 0) ||
	    (p->optimizer != 0 && p->optimizer != 1))
		return FL_EINVAL;
	if (!dp && p->batch_size < 1)
		return FL_EINVAL;
	if (dp && (!noise || !(p->dp_q > 0 && p->dp_q <= 1) || !(p->dp_noise >= 0)))
		return FL_EINVAL;
	if ((rv = opt_reserve(m)) != 0)
		return rv;
	if ((rv = lr_eval(m, ad, &res->eval_before)) != 0)
		return rv;
	memset(m->m1, 0, 2 * m->np * sizeof(float)); /* fresh optimizer state per round */
	idx = malloc(m->n_train * sizeof *idx);
	if (!idx)
		return FL_ENOMEM;
	for (long i = 0; i < m->n_train; i++)
		idx[i] = i;
	fl_rng_init(&g, p->round_seed, LR_STREAM_BATCH + (uint64_t)m->client);
	pos = m->n_train; /* shuffle before the first batch */

	for (int step = 1; step <= p->local_steps; step++) {
		long n;
		const long *bi;
		if (p->before_step && (rv = p->before_step(p->step_arg, step - 1)) != 0)
			goto done;
		if (dp) {
			if ((rv = priv_poisson_sample(noise, m->n_train, p->dp_q, idx, &n)) != 0)
				goto done;
			bi = idx;
		} else {
			n = p->batch_size < m->n_train ? p->batch_size : m->n_train;
			if (pos + n > m->n_train) { /* new epoch: Fisher-Yates */
				for (long i = m->n_train - 1; i > 0; i--) {
					long j = (long)fl_rng_below(&g, (uint64_t)i + 1),
					     t = idx[i];
					idx[i] = idx[j];
					idx[j] = t;
				}
				pos = 0;
			}
			bi = idx + pos;
			pos += n;
		}
		if (n > 0) {
			if ((rv = gather(m, bi, n)) != 0)
				goto done;
			forward(m, ad, (int)n);
			loss_sum += 0.5 * sq_error(m, 0, (int)n) / n;
			loss_n++;
			seen += n;
		}
		if (dp) {
			if ((size_t)n * P > m->pex_cap) {
				float *q = realloc(m->pex, (size_t)n * P * sizeof(float));
				if (!q) {
					rv = FL_ENOMEM;
					goto done;
				}
				m->pex = q;
				m->pex_cap = (size_t)n * P;
			}
			if (n > 0 && (rv = example_rows(m, ad, (int)n, p->train_a, m->pex)) != 0)
				goto done;
			if ((rv = priv_dpsgd_reduce(m->pex, (int)n, P, p->dp_clip, p->dp_noise,
			                            p->dp_q * m->n_train, noise, m->grad)) != 0)
				goto done;
			res->dp_steps++;
		} else {
			memset(m->grad, 0, m->np * sizeof(float));
			backward(m, ad, 0, (int)n, 1.0 / n, p->train_a, m->grad);
			memmove(m->grad, m->grad + off, P * sizeof(float));
		}
		opt_step(m, ad->params + off, m->grad, P, p, step);
		res->steps++;
	}
	for (size_t j = 0; j < m->np; j++)
		if (!isfinite(ad->params[j])) {
			rv = FL_ENONFINITE; /* diverged: lr too large for this task */
			goto done;
		}
	if ((rv = lr_eval(m, ad, &res->eval_after)) != 0)
		goto done;
	res->train_loss = loss_n ? loss_sum / loss_n : res->eval_before;
	res->num_samples = m->n_train;
	{
		double dt = now_s() - t0;
		res->tokens_per_s = dt > 0 ? seen / dt : 0;
	}
done:
	free(idx);
	return rv;
}

/* ---- model_task_ops ---- */

static int ops_open(void **impl, const model_task_opts *o)
{
	model_linreg *m;
	int rv = model_linreg_open(&m, o);
	*impl = rv ? NULL : m;
	return rv;
}

static void ops_close(void *impl)
{
	model_linreg_close(impl);
}

static int ops_adapter_new(void *impl, uint64_t seed, lora_adapter **out)
{
	model_linreg *m = impl;
	char names[LR_MAX_LAYERS][24];
	const char *np[LR_MAX_LAYERS];
	int dims[LR_MAX_LAYERS], rv;
	for (int l = 0; l < m->L; l++) {
		snprintf(names[l], sizeof names[l], "layers.%d", l);
		np[l] = names[l];
		dims[l] = m->d;
	}
	if ((rv = lora_adapter_new(out, m->L, np, dims, dims, m->r, m->alpha)) != 0)
		return rv;
	lora_adapter_init(*out, seed);
	return 0;
}

static int ops_train(void *impl, lora_adapter *ad, const model_train_params *p,
                     struct priv_noise *noise, model_train_result *res)
{
	return lr_train(impl, ad, p, noise, res);
}

static int ops_eval(void *impl, const lora_adapter *ad, double *loss, double *acc)
{
	*acc = NAN;
	return lr_eval(impl, ad, loss);
}

static long ops_num_samples(const void *impl)
{
	const model_linreg *m = impl;
	return m->n_train;
}

const model_task_ops model_linreg_ops = {
    .name = "linreg",
    .open = ops_open,
    .close = ops_close,
    .adapter_new = ops_adapter_new,
    .train = ops_train,
    .eval = ops_eval,
    .num_samples = ops_num_samples,
};
