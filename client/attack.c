/*
 * client/attack.c — hostile updates for tests and experiments
 * (client/attack.h). Never active unless asked for on the command line.
 */
#include "client/attack.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/rng.h"

static int parse_num(const char *s, double *v)
{
	char *end;
	*v = strtod(s, &end);
	return *s && !*end && isfinite(*v) ? 0 : FL_EINVAL;
}

int client_attack_parse(const char *spec, client_attack *out)
{
	memset(out, 0, sizeof *out);
	if (!spec)
		return FL_EINVAL;
	if (!strcmp(spec, "flip")) {
		out->kind = CLIENT_ATTACK_FLIP;
		out->s = 1.0;
		return 0;
	}
	if (!strncmp(spec, "flip:", 5)) {
		out->kind = CLIENT_ATTACK_FLIP;
		return parse_num(spec + 5, &out->s);
	}
	if (!strncmp(spec, "scale:", 6)) {
		out->kind = CLIENT_ATTACK_SCALE;
		return parse_num(spec + 6, &out->s);
	}
	if (!strncmp(spec, "noise:", 6)) {
		out->kind = CLIENT_ATTACK_NOISE;
		if (parse_num(spec + 6, &out->s) != 0 || !(out->s > 0))
			return FL_EINVAL;
		return 0;
	}
	if (!strncmp(spec, "canary:", 7)) {
		out->kind = CLIENT_ATTACK_CANARY;
		if (parse_num(spec + 7, &out->s) != 0 || out->s == 0)
			return FL_EINVAL;
		return 0;
	}
	return FL_EINVAL;
}

int client_attack_apply(const client_attack *a, lora_adapter *trained, const lora_adapter *global,
                        int train_a, uint64_t seed)
{
	const size_t n = trained->n_a + trained->n_b, off0 = train_a ? 0 : trained->n_a;
	float *x = trained->params;
	const float *g = global->params;
	fl_rng r;

	if (!lora_adapter_same_shape(trained, global))
		return FL_ESHAPE;
	fl_rng_init(&r, seed, 0xa77ac);
	for (size_t i = off0; i < n; i++) {
		double d = (double)x[i] - g[i];
		switch (a->kind) {
		case CLIENT_ATTACK_SCALE:
			d *= a->s;
			break;
		case CLIENT_ATTACK_FLIP:
			d *= -a->s;
			break;
		case CLIENT_ATTACK_NOISE:
			d += a->s * fl_rng_normal(&r);
			break;
		case CLIENT_ATTACK_CANARY:
			d = i == trained->n_a ? a->s : 0;
			break;
		case CLIENT_ATTACK_NONE:
			break;
		}
		x[i] = (float)(g[i] + d);
	}
	return 0;
}
