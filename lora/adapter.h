/*
 * lora/adapter.h — a LoRA adapter: the set of (A, B) pairs of every adapted
 * linear layer, in one float32 allocation.
 *
 * An adapted layer computes y = W0 x + (alpha/r) B A x with W0 (out x in)
 * frozen, A (r x in) and B (out x r), all row-major. Every A of the adapter
 * lies first in `params`, matrix after matrix, then every B: so "all A" and
 * "all B" are flat slices (params[0 .. n_a) and params[n_a .. n_a + n_b)),
 * which keeps aggregation, clipping, noise and serialization flat loops.
 *
 * Matrix names are module paths without suffix: "layers.0" for linreg,
 * "model.layers.3.self_attn.q_proj" for language models. Tensor names on the
 * wire and in files are NAME ".lora_A.weight" / NAME ".lora_B.weight"; the
 * PEFT export adds the "base_model.model." prefix.
 *
 * Ownership: lora_adapter_new/clone return an adapter the caller frees with
 * lora_adapter_free (NULL is a no-op); the lora_mat A/B pointers point into
 * params and are never freed on their own.
 */
#ifndef FL_LORA_ADAPTER_H
#define FL_LORA_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#define LORA_NAME_MAX 128

typedef struct lora_mat {
	char name[LORA_NAME_MAX];
	int in, out; /* W0 is (out x in) */
	float *A;    /* (r x in), into params */
	float *B;    /* (out x r), into params */
} lora_mat;

typedef struct lora_adapter {
	int n;       /* number of adapted matrices */
	int r;       /* rank */
	float alpha; /* scale is alpha / r */
	lora_mat *mats;
	float *params; /* n_a floats of A's, then n_b floats of B's */
	size_t n_a, n_b;
} lora_adapter;

/* New adapter of n matrices (names[i], in[i], out[i]) with rank r; all zero. */
int lora_adapter_new(lora_adapter **out, int n, const char *const *names, const int *in,
                     const int *outd, int r, float alpha);
void lora_adapter_free(lora_adapter *a);
/* Deep copy. */
int lora_adapter_clone(lora_adapter **out, const lora_adapter *src);
/* Copies values of src into dst; FL_ESHAPE unless same shape. */
int lora_adapter_copy(lora_adapter *dst, const lora_adapter *src);
/* 1 when names, dims, r are the same. */
int lora_adapter_same_shape(const lora_adapter *a, const lora_adapter *b);
/* PEFT default init: A Kaiming-uniform, bound 1/sqrt(in), from a deterministic
 * stream of `seed`; B = 0. The same seed gives the same A everywhere. */
void lora_adapter_init(lora_adapter *a, uint64_t seed);
static inline float lora_adapter_scale(const lora_adapter *a)
{
	return a->alpha / (float)a->r;
}
static inline float *lora_adapter_a(const lora_adapter *a)
{
	return a->params;
}
static inline float *lora_adapter_b(const lora_adapter *a)
{
	return a->params + a->n_a;
}
/* Writes NAME.lora_A.weight (which = 'A') or NAME.lora_B.weight into buf. */
int lora_adapter_tensor_name(const lora_adapter *a, int i, char which, char *buf, size_t n);

#endif
