/*
 * tests/linreg_test.c — the linreg task (model/linreg.c) and the task
 * dispatch (model/task.c): analytic gradients against central finite
 * differences of a double-precision reference loss on tiny shapes, per-example
 * gradients against the batch gradient, local training and DP-SGD training
 * lowering the held-out loss, A frozen under train_a = 0, determinism of the
 * synthetic data, and refusals (wrong shape, no data, unknown task).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lora/adapter.h"
#include "model/linreg.h"
#include "model/task.h"
#include "privacy/noise.h"
#include "tests/test.h"

static void tiny_opts(model_task_opts *o, int client)
{
	model_task_opts_default(o);
	o->seed = 7;
	o->client_index = client;
	o->linreg_layers = 3;
	o->linreg_dim = 5;
	o->linreg_samples = 8;
	o->rank = 2;
	o->alpha = 3;
}

/* Double-precision reference loss of examples idx[0..n) with the adapter
 * parameters taken from pd (adapter layout, doubles). */
static double ref_loss(const model_linreg_view *v, const lora_adapter *ad, const double *pd,
                       const long *idx, int n)
{
	int d = v->dim, r = ad->r;
	double s = (double)ad->alpha / r, acc = 0;
	double *h = malloc(2 * d * sizeof *h), *u = malloc(r * sizeof *u);
	for (int k = 0; k < n; k++) {
		double *a = h, *b = h + d, *t;
		for (int j = 0; j < d; j++)
			a[j] = v->x_train[(size_t)idx[k] * d + j];
		for (int l = 0; l < v->layers; l++) {
			const double *A = pd + (ad->mats[l].A - ad->params);
			const double *B = pd + (ad->mats[l].B - ad->params);
			const float *W = v->w0 + (size_t)l * d * d;
			for (int q = 0; q < r; q++) {
				u[q] = 0;
				for (int j = 0; j < d; j++)
					u[q] += A[q * d + j] * a[j];
			}
			for (int i = 0; i < d; i++) {
				b[i] = 0;
				for (int j = 0; j < d; j++)
					b[i] += W[i * d + j] * a[j];
				for (int q = 0; q < r; q++)
					b[i] += s * B[i * r + q] * u[q];
			}
			t = a;
			a = b;
			b = t;
		}
		for (int j = 0; j < d; j++) {
			double e = a[j] - v->y_train[(size_t)idx[k] * d + j];
			acc += e * e;
		}
	}
	free(h);
	free(u);
	return 0.5 * acc / n;
}

/* Random A and non-zero B so every gradient term is exercised. */
static lora_adapter *random_adapter(model_task *t, uint64_t seed)
{
	lora_adapter *ad;
	if (model_task_adapter_new(t, seed, &ad) != 0)
		return NULL;
	srand((unsigned)seed);
	for (size_t j = 0; j < ad->n_b; j++)
		lora_adapter_b(ad)[j] = (float)(rand() / (double)RAND_MAX - 0.5);
	return ad;
}

static void check_fd(int train_a)
{
	model_task_opts o;
	model_linreg *m = NULL;
	model_task *t = NULL;
	lora_adapter *ad = NULL;
	model_linreg_view v;
	long idx[] = {0, 3, 5, 6};
	int n = 4;
	double loss, *pd = NULL;
	float *grad = NULL;
	size_t np;

	tiny_opts(&o, 1);
	CHECK_RC(model_linreg_open(&m, &o));
	CHECK_RC(model_task_open(&t, &o));
	if (!m || !t)
		goto done;
	ad = random_adapter(t, 11);
	CHECK(ad != NULL);
	if (!ad)
		goto done;
	np = ad->n_a + ad->n_b;
	grad = calloc(np, sizeof *grad);
	pd = calloc(np, sizeof *pd);
	CHECK(grad && pd);
	if (!grad || !pd)
		goto done;
	model_linreg_view_get(m, &v);
	CHECK_RC(model_linreg_loss_grad(m, ad, idx, n, train_a, &loss, grad));
	for (size_t j = 0; j < np; j++)
		pd[j] = ad->params[j];
	CHECK_NEAR(loss, ref_loss(&v, ad, pd, idx, n), 1e-6, 1e-5);
	for (size_t j = 0; j < np; j++) {
		const double h = 1e-5;
		double x = pd[j], fp, fm, fd;
		pd[j] = x + h;
		fp = ref_loss(&v, ad, pd, idx, n);
		pd[j] = x - h;
		fm = ref_loss(&v, ad, pd, idx, n);
		pd[j] = x;
		fd = (fp - fm) / (2 * h);
		if (!train_a && j < ad->n_a)
			CHECK(grad[j] == 0.0f); /* A frozen: no gradient computed */
		else
			CHECK_NEAR(grad[j], fd, 2e-5, 1e-3);
	}
done:
	free(grad);
	free(pd);
	lora_adapter_free(ad);
	model_task_close(t);
	model_linreg_close(m);
}

static void test_grad_fd_ab(void)
{
	check_fd(1);
}

static void test_grad_fd_b_only(void)
{
	check_fd(0);
}

/* The mean of per-example rows equals the batch gradient. */
static void test_per_example_sum(void)
{
	model_task_opts o;
	model_linreg *m = NULL;
	model_task *t = NULL;
	lora_adapter *ad = NULL;
	long idx[] = {1, 2, 4, 7, 0};
	int n = 5;
	double loss;
	float *grad, *rows;

	tiny_opts(&o, 2);
	CHECK_RC(model_linreg_open(&m, &o));
	CHECK_RC(model_task_open(&t, &o));
	if (!m || !t)
		goto done;
	ad = random_adapter(t, 5);
	if (!ad)
		goto done;
	for (int train_a = 0; train_a <= 1; train_a++) {
		size_t np = ad->n_a + ad->n_b, off = train_a ? 0 : ad->n_a, P = np - off;
		grad = calloc(np, sizeof *grad);
		rows = calloc(n * P, sizeof *rows);
		CHECK_RC(model_linreg_loss_grad(m, ad, idx, n, train_a, &loss, grad));
		CHECK_RC(model_linreg_example_grads(m, ad, idx, n, train_a, rows));
		for (size_t j = 0; j < P; j++) {
			double s = 0;
			for (int i = 0; i < n; i++)
				s += rows[i * P + j];
			CHECK_NEAR(s / n, grad[off + j], 1e-6, 1e-4);
		}
		free(grad);
		free(rows);
	}
done:
	lora_adapter_free(ad);
	model_task_close(t);
	model_linreg_close(m);
}

#define LR_SGD 0.05

static void default_params(model_train_params *p)
{
	memset(p, 0, sizeof *p);
	p->local_steps = 40;
	p->batch_size = 32;
	p->lr = 0.01;
	p->optimizer = 1;
	p->train_a = 1;
	p->round_seed = 3;
}

/* AdamW and SGD, A and B or B only: the held-out loss falls, a frozen A
 * stays bit-identical, and many steps fit one client's shift closely. */
static void test_train_lowers_loss(void)
{
	model_task_opts o;
	model_task *t = NULL;
	lora_adapter *ad = NULL, *a0 = NULL;
	model_train_params p;
	model_train_result res;

	model_task_opts_default(&o);
	o.client_index = 0;
	o.seed = 42;
	CHECK_RC(model_task_open(&t, &o));
	if (!t)
		return;
	CHECK(model_task_num_samples(t) == o.linreg_samples);
	for (int variant = 0; variant < 4; variant++) {
		default_params(&p);
		p.optimizer = variant & 1;
		p.train_a = !(variant & 2);
		if (p.optimizer == 0)
			p.lr = LR_SGD;
		CHECK_RC(model_task_adapter_new(t, 9, &ad));
		CHECK_RC(lora_adapter_clone(&a0, ad));
		CHECK_RC(model_task_train(t, ad, &p, NULL, &res));
		fprintf(stderr, "  %s %s: held-out loss %.5f -> %.5f\n",
		        p.optimizer ? "adamw" : "sgd", p.train_a ? "A+B" : "B only",
		        res.eval_before, res.eval_after);
		CHECK(res.steps == p.local_steps);
		CHECK(res.dp_steps == 0);
		CHECK(res.num_samples == o.linreg_samples);
		CHECK(isfinite(res.train_loss));
		CHECK(res.eval_after < 0.8 * res.eval_before);
		if (!p.train_a)
			CHECK(!memcmp(a0->params, ad->params, ad->n_a * sizeof(float)));
		else
			CHECK(memcmp(a0->params, ad->params, ad->n_a * sizeof(float)) != 0);
		lora_adapter_free(ad);
		lora_adapter_free(a0);
		ad = a0 = NULL;
	}
	/* a long run fits the client's rank-4 shifts: near the noise floor */
	default_params(&p);
	p.local_steps = 1500;
	CHECK_RC(model_task_adapter_new(t, 9, &ad));
	CHECK_RC(model_task_train(t, ad, &p, NULL, &res));
	CHECK(res.eval_after < 0.05 * res.eval_before);
	fprintf(stderr, "  fit: held-out loss %.5f -> %.5f after %d AdamW steps\n", res.eval_before,
	        res.eval_after, res.steps);
	lora_adapter_free(ad);
	model_task_close(t);
}

/* before_step: called once before every step with its 0-based index; its
 * nonzero return stops training at once and is returned. */
static int stop_at_3(void *arg, int step)
{
	int *calls = arg;
	CHECK(step == *calls);
	(*calls)++;
	return step == 3 ? FL_ETIMEOUT : 0;
}

static void test_before_step_stops(void)
{
	model_task_opts o;
	model_task *t = NULL;
	lora_adapter *ad = NULL;
	model_train_params p;
	model_train_result res;
	int calls = 0;

	model_task_opts_default(&o);
	o.client_index = 0;
	CHECK_RC(model_task_open(&t, &o));
	if (!t)
		return;
	CHECK_RC(model_task_adapter_new(t, 9, &ad));
	default_params(&p);
	p.before_step = stop_at_3;
	p.step_arg = &calls;
	CHECK(model_task_train(t, ad, &p, NULL, &res) == FL_ETIMEOUT);
	CHECK(calls == 4);
	CHECK(res.steps == 3);
	/* a hook that never stops sees every step */
	calls = 0;
	p.local_steps = 3;
	CHECK_RC(model_task_train(t, ad, &p, NULL, &res));
	CHECK(calls == 3 && res.steps == 3);
	lora_adapter_free(ad);
	model_task_close(t);
}

/* DP-SGD: one DP step per local step, A frozen under train_a = 0, and with
 * moderate noise the held-out loss still falls. Noise off (sigma 0) and a
 * clip far above every example's norm gives the plain mean gradient times
 * (batch / expected batch): the loss falls too. */
static void test_dp_train(void)
{
	model_task_opts o;
	model_task *t = NULL;
	lora_adapter *ad = NULL, *a0 = NULL;
	model_train_params p;
	model_train_result res;
	priv_noise *nz = NULL;

	model_task_opts_default(&o);
	o.client_index = 1;
	CHECK_RC(model_task_open(&t, &o));
	CHECK_RC(priv_noise_new(&nz));
	if (!t || !nz)
		goto done;
	default_params(&p);
	p.dp_clip = 1.0;
	p.dp_noise = 0.5;
	p.dp_q = 0.0625;
	p.train_a = 0;
	CHECK(model_task_train(t, ad ? ad : NULL, &p, NULL, &res) == FL_EINVAL);
	CHECK_RC(model_task_adapter_new(t, 4, &ad));
	CHECK(model_task_train(t, ad, &p, NULL, &res) == FL_EINVAL); /* DP needs noise */
	CHECK_RC(lora_adapter_clone(&a0, ad));
	CHECK_RC(model_task_train(t, ad, &p, nz, &res));
	CHECK(res.dp_steps == p.local_steps);
	CHECK(res.eval_after < res.eval_before);
	CHECK(!memcmp(a0->params, ad->params, ad->n_a * sizeof(float)));
	fprintf(stderr, "  dp (sigma %.2f, C %.1f, q %.4f): held-out loss %.5f -> %.5f\n",
	        p.dp_noise, p.dp_clip, p.dp_q, res.eval_before, res.eval_after);
	p.dp_noise = 0;
	p.dp_clip = 1e6;
	p.train_a = 1;
	CHECK_RC(model_task_train(t, ad, &p, nz, &res));
	CHECK(res.eval_after < res.eval_before);
done:
	lora_adapter_free(ad);
	lora_adapter_free(a0);
	priv_noise_free(nz);
	model_task_close(t);
}

/* Same (seed, client) -> same data; another client shares W0 and x's
 * distribution but not its targets; another seed changes W0. */
static void test_data_deterministic(void)
{
	model_task_opts o;
	model_linreg *a = NULL, *b = NULL, *c = NULL, *e = NULL;
	model_linreg_view va, vb, vc, ve;
	size_t nw, ny;

	tiny_opts(&o, 0);
	CHECK_RC(model_linreg_open(&a, &o));
	CHECK_RC(model_linreg_open(&b, &o));
	o.client_index = 1;
	CHECK_RC(model_linreg_open(&c, &o));
	o.seed = 8;
	CHECK_RC(model_linreg_open(&e, &o));
	if (!a || !b || !c || !e)
		goto done;
	model_linreg_view_get(a, &va);
	model_linreg_view_get(b, &vb);
	model_linreg_view_get(c, &vc);
	model_linreg_view_get(e, &ve);
	nw = (size_t)va.layers * va.dim * va.dim * sizeof(float);
	ny = (size_t)va.n_train * va.dim * sizeof(float);
	CHECK(!memcmp(va.w0, vb.w0, nw) && !memcmp(va.y_train, vb.y_train, ny));
	CHECK(!memcmp(va.w0, vc.w0, nw));
	CHECK(memcmp(va.y_train, vc.y_train, ny) != 0);
	CHECK(memcmp(va.w0, ve.w0, nw) != 0);
	CHECK(va.n_eval >= 128);
done:
	model_linreg_close(a);
	model_linreg_close(b);
	model_linreg_close(c);
	model_linreg_close(e);
}

static void test_refusals(void)
{
	model_task_opts o;
	model_task *coord = NULL, *t = NULL, *other = NULL;
	lora_adapter *ad = NULL, *wrong = NULL;
	model_train_params p;
	model_train_result res;
	double loss, acc;

	tiny_opts(&o, -1);
	CHECK_RC(model_task_open(&coord, &o)); /* shape only */
	if (!coord)
		return;
	CHECK_RC(model_task_adapter_new(coord, 1, &ad));
	CHECK(ad && ad->n == 3 && ad->r == 2 && !strcmp(ad->mats[2].name, "layers.2"));
	CHECK(ad && ad->mats[0].in == 5 && ad->mats[0].out == 5);
	default_params(&p);
	CHECK(model_task_train(coord, ad, &p, NULL, &res) == FL_ESTATE);
	CHECK(model_task_eval(coord, ad, &loss, &acc) == FL_ESTATE);
	o.client_index = 0;
	CHECK_RC(model_task_open(&t, &o));
	CHECK_RC(model_task_eval(t, ad, &loss, &acc));
	CHECK(isfinite(loss) && isnan(acc));
	o.rank = 3;
	CHECK_RC(model_task_open(&other, &o));
	CHECK_RC(model_task_adapter_new(other, 1, &wrong));
	CHECK(model_task_train(t, wrong, &p, NULL, &res) == FL_ESHAPE);
	CHECK(model_task_eval(t, wrong, &loss, &acc) == FL_ESHAPE);
	p.batch_size = 0;
	CHECK(model_task_train(t, ad, &p, NULL, &res) == FL_EINVAL);
	o.task = "nonsense";
	{
		model_task *bad = NULL;
		CHECK(model_task_open(&bad, &o) == FL_EINVAL && bad == NULL);
	}
	o.task = "linreg";
	o.rank = 6; /* rank above the width */
	{
		model_task *bad = NULL;
		CHECK(model_task_open(&bad, &o) == FL_EINVAL && bad == NULL);
	}
	lora_adapter_free(ad);
	lora_adapter_free(wrong);
	model_task_close(coord);
	model_task_close(t);
	model_task_close(other);
}

static void test_unknown_task(void)
{
	model_task_opts o;
	model_task *t = (model_task *)&o;
	model_task_opts_default(&o);
	o.task = "nonsense";
	CHECK(model_task_open(&t, &o) == FL_EINVAL);
	CHECK(t == NULL);
}

static const test_case cases[] = {TEST(test_grad_fd_ab),        TEST(test_grad_fd_b_only),
                                  TEST(test_per_example_sum),   TEST(test_train_lowers_loss),
                                  TEST(test_dp_train),          TEST(test_data_deterministic),
                                  TEST(test_refusals),          TEST(test_unknown_task),
                                  TEST(test_before_step_stops), {0}};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
