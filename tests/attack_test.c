/*
 * tests/attack_test.c — hostile-client updates (client/attack.h): specs parse
 * or are refused, scale and flip rewrite the delta, and the audit canary
 * (canary:M) puts exactly M at the first B coordinate and the global
 * everywhere else, whatever the honest training did.
 */
#include <math.h>

#include "client/attack.h"
#include "lora/adapter.h"
#include "tests/test.h"

static lora_adapter *make(void)
{
	const char *names[2] = {"layers.0", "layers.1"};
	const int in[2] = {4, 3}, out[2] = {3, 5};
	lora_adapter *a = NULL;
	if (lora_adapter_new(&a, 2, names, in, out, 2, 4.0f) != 0)
		return NULL;
	for (size_t i = 0; i < a->n_a + a->n_b; i++)
		a->params[i] = 0.01f * (float)i - 0.2f;
	return a;
}

static void test_attack_parse(void)
{
	client_attack a;
	CHECK(client_attack_parse("canary:100", &a) == 0 && a.kind == CLIENT_ATTACK_CANARY &&
	      a.s == 100);
	CHECK(client_attack_parse("canary:-2.5", &a) == 0 && a.s == -2.5);
	CHECK(client_attack_parse("canary:0", &a) == FL_EINVAL);
	CHECK(client_attack_parse("canary:", &a) == FL_EINVAL);
	CHECK(client_attack_parse("canary:x", &a) == FL_EINVAL);
	CHECK(client_attack_parse("canary:inf", &a) == FL_EINVAL);
	CHECK(client_attack_parse("flip", &a) == 0 && a.kind == CLIENT_ATTACK_FLIP && a.s == 1);
	CHECK(client_attack_parse("scale:3", &a) == 0 && a.kind == CLIENT_ATTACK_SCALE);
	CHECK(client_attack_parse("noise:0", &a) == FL_EINVAL);
	CHECK(client_attack_parse("bogus", &a) == FL_EINVAL);
	CHECK(client_attack_parse(NULL, &a) == FL_EINVAL);
}

static void test_attack_canary_is_dirac(void)
{
	lora_adapter *g = make(), *t = NULL;
	client_attack a;
	CHECK(g != NULL);
	if (!g)
		return;
	for (int train_a = 0; train_a < 2; train_a++) {
		CHECK_RC(lora_adapter_clone(&t, g));
		for (size_t i = 0; i < t->n_a + t->n_b; i++)
			t->params[i] += 0.5f; /* "honest training" moved everything */
		CHECK_RC(client_attack_parse("canary:7", &a));
		CHECK_RC(client_attack_apply(&a, t, g, train_a, 1));
		for (size_t i = train_a ? 0 : g->n_a; i < t->n_a + t->n_b; i++) {
			double want = i == g->n_a ? (double)g->params[i] + 7 : g->params[i];
			CHECK_NEAR(t->params[i], want, 1e-6, 0);
		}
		lora_adapter_free(t);
		t = NULL;
	}
	lora_adapter_free(g);
}

static void test_attack_scale_and_flip(void)
{
	lora_adapter *g = make(), *t = NULL;
	client_attack a;
	CHECK(g != NULL);
	if (!g)
		return;
	CHECK_RC(lora_adapter_clone(&t, g));
	for (size_t i = 0; i < t->n_a + t->n_b; i++)
		t->params[i] += 0.25f;
	CHECK_RC(client_attack_parse("flip:2", &a));
	CHECK_RC(client_attack_apply(&a, t, g, 1, 1));
	for (size_t i = 0; i < t->n_a + t->n_b; i++)
		CHECK_NEAR(t->params[i], (double)g->params[i] - 0.5, 1e-6, 0);
	lora_adapter_free(t);
	lora_adapter_free(g);
}

static const test_case cases[] = {
    TEST(test_attack_parse),
    TEST(test_attack_canary_is_dirac),
    TEST(test_attack_scale_and_flip),
    {0},
};

int main(int argc, char **argv)
{
	return test_main(argc, argv, cases);
}
