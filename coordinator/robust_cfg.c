/*
 * coordinator/robust_cfg.c — settings and metrics of robust aggregation
 * (coordinator/robust_cfg.h). The rules themselves are in lora/robust.c.
 */
#include "coordinator/robust_cfg.h"

#include <math.h>

#include "core/err.h"

int coord_robust_opts(const coord_config *c, lora_robust_opts *o)
{
	int rv;

	lora_robust_opts_default(o);
	if ((rv = lora_robust_parse(c->aggregator, &o->rule)) != 0)
		return rv;
	o->norm_bound = c->norm_bound;
	o->norm_factor = c->norm_factor;
	o->trim_frac = c->trim_frac;
	o->krum_f = c->krum_f;
	o->krum_m = c->krum_m;
	return lora_robust_opts_check(o);
}

static int put(cJSON *o, const char *k, double v)
{
	cJSON *n = isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
	if (!n)
		return -1;
	if (!cJSON_AddItemToObject(o, k, n)) {
		cJSON_Delete(n);
		return -1;
	}
	return 0;
}

cJSON *coord_robust_json(const lora_robust_stats *s)
{
	cJSON *o = cJSON_CreateObject();
	int bad = 0;

	if (!o)
		return NULL;
	bad |= !cJSON_AddStringToObject(o, "rule", lora_robust_name(s->rule));
	bad |= put(o, "clients", s->clients);
	bad |= put(o, "selected", s->selected);
	bad |= put(o, "dropped", s->dropped);
	bad |= put(o, "clipped", s->clipped);
	bad |= put(o, "trimmed", s->trimmed);
	bad |= !cJSON_AddBoolToObject(o, "fallback", s->fallback);
	if (s->rule == LORA_ROBUST_KRUM || s->fallback)
		bad |= put(o, "krum_f", s->krum_f);
	if (s->rule == LORA_ROBUST_NORM_BOUND)
		bad |= put(o, "bound", s->bound);
	if (bad) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}
