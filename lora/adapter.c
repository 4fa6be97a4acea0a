/* lora/adapter.c — see lora/adapter.h. */
#include "lora/adapter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"

int lora_adapter_new(lora_adapter **out, int n, const char *const *names, const int *in,
                     const int *outd, int r, float alpha)
{
	lora_adapter *a;
	size_t na = 0, nb = 0, oa = 0, ob = 0;

	*out = NULL;
	if (n <= 0 || r <= 0 || r > 4096)
		return FL_EINVAL;
	for (int i = 0; i < n; i++) {
		if (in[i] <= 0 || outd[i] <= 0 || strlen(names[i]) >= LORA_NAME_MAX)
			return FL_EINVAL;
		na += (size_t)r * in[i];
		nb += (size_t)outd[i] * r;
	}
	a = calloc(1, sizeof *a);
	if (!a)
		return FL_ENOMEM;
	a->mats = calloc(n, sizeof *a->mats);
	a->params = calloc(na + nb, sizeof(float));
	if (!a->mats || !a->params) {
		lora_adapter_free(a);
		return FL_ENOMEM;
	}
	a->n = n;
	a->r = r;
	a->alpha = alpha;
	a->n_a = na;
	a->n_b = nb;
	for (int i = 0; i < n; i++) {
		lora_mat *m = &a->mats[i];
		snprintf(m->name, sizeof m->name, "%s", names[i]);
		m->in = in[i];
		m->out = outd[i];
		m->A = a->params + oa;
		m->B = a->params + na + ob;
		oa += (size_t)r * in[i];
		ob += (size_t)outd[i] * r;
	}
	*out = a;
	return 0;
}

void lora_adapter_free(lora_adapter *a)
{
	if (!a)
		return;
	free(a->params);
	free(a->mats);
	free(a);
}

int lora_adapter_clone(lora_adapter **out, const lora_adapter *src)
{
	const char **names;
	int *in, *od, rv;

	names = malloc(src->n * sizeof *names);
	in = malloc(src->n * sizeof *in);
	od = malloc(src->n * sizeof *od);
	if (!names || !in || !od) {
		rv = FL_ENOMEM;
		goto done;
	}
	for (int i = 0; i < src->n; i++) {
		names[i] = src->mats[i].name;
		in[i] = src->mats[i].in;
		od[i] = src->mats[i].out;
	}
	rv = lora_adapter_new(out, src->n, names, in, od, src->r, src->alpha);
	if (rv == 0)
		memcpy((*out)->params, src->params, (src->n_a + src->n_b) * sizeof(float));
done:
	free(names);
	free(in);
	free(od);
	return rv;
}

int lora_adapter_same_shape(const lora_adapter *a, const lora_adapter *b)
{
	if (a->n != b->n || a->r != b->r || a->n_a != b->n_a || a->n_b != b->n_b)
		return 0;
	for (int i = 0; i < a->n; i++)
		if (a->mats[i].in != b->mats[i].in || a->mats[i].out != b->mats[i].out ||
		    strcmp(a->mats[i].name, b->mats[i].name))
			return 0;
	return 1;
}

int lora_adapter_copy(lora_adapter *dst, const lora_adapter *src)
{
	if (!lora_adapter_same_shape(dst, src))
		return FL_ESHAPE;
	memcpy(dst->params, src->params, (src->n_a + src->n_b) * sizeof(float));
	dst->alpha = src->alpha;
	return 0;
}

void lora_adapter_init(lora_adapter *a, uint64_t seed)
{
	for (int i = 0; i < a->n; i++) {
		lora_mat *m = &a->mats[i];
		fl_rng rng;
		double bound = 1.0 / sqrt((double)m->in);
		fl_rng_init(&rng, seed, 0x10a0000u + (uint64_t)i);
		for (size_t j = 0; j < (size_t)a->r * m->in; j++)
			m->A[j] = (float)((2.0 * fl_rng_uniform(&rng) - 1.0) * bound);
		memset(m->B, 0, (size_t)m->out * a->r * sizeof(float));
	}
}

int lora_adapter_tensor_name(const lora_adapter *a, int i, char which, char *buf, size_t n)
{
	int k;
	if (i < 0 || i >= a->n || (which != 'A' && which != 'B'))
		return FL_EINVAL;
	k = snprintf(buf, n, "%s.lora_%c.weight", a->mats[i].name, which);
	return (k < 0 || (size_t)k >= n) ? FL_EINVAL : 0;
}
