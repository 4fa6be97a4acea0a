/*
 * lora/robust.c — norm bounding, coordinate-wise median and trimmed mean, and
 * multi-Krum over kept client slices (lora/robust.h has the contract).
 *
 * All arithmetic is in double; each result coordinate is rounded to float once.
 * Median and trimmed mean gather the K values of one coordinate into a small
 * buffer and sort it (K is the number of clients of a round, so an insertion
 * sort is the right tool); Krum fills a K x K table of squared distances
 * (K^2/2 passes over the slice).
 *
 * Does not: weight median or trimmed mean by sample counts, or act on the
 * product B A (see the header).
 */
#include "lora/robust.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"

static const struct {
	const char *name;
	lora_robust_rule rule;
} rules[] = {
    {"mean", LORA_ROBUST_MEAN},     {"norm-bound", LORA_ROBUST_NORM_BOUND},
    {"median", LORA_ROBUST_MEDIAN}, {"trimmed-mean", LORA_ROBUST_TRIMMED},
    {"krum", LORA_ROBUST_KRUM},
};

int lora_robust_parse(const char *s, lora_robust_rule *out)
{
	if (!s)
		return FL_EINVAL;
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
		if (!strcmp(s, rules[i].name)) {
			*out = rules[i].rule;
			return 0;
		}
	return FL_EINVAL;
}

const char *lora_robust_name(lora_robust_rule r)
{
	for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
		if (rules[i].rule == r)
			return rules[i].name;
	return "unknown";
}

void lora_robust_opts_default(lora_robust_opts *o)
{
	memset(o, 0, sizeof *o);
	o->rule = LORA_ROBUST_MEAN;
	o->norm_bound = 0;
	o->norm_factor = 1.0;
	o->trim_frac = 0.2;
	o->krum_f = -1;
	o->krum_m = 0;
}

int lora_robust_opts_check(const lora_robust_opts *o)
{
	if (!o || o->rule < LORA_ROBUST_MEAN || o->rule > LORA_ROBUST_KRUM)
		return FL_EINVAL;
	if (!(o->norm_bound >= 0) || !isfinite(o->norm_bound) || !(o->norm_factor > 0) ||
	    !isfinite(o->norm_factor))
		return FL_EINVAL;
	if (!(o->trim_frac >= 0 && o->trim_frac < 0.5))
		return FL_EINVAL;
	return 0;
}

static int all_finite(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isfinite(x[i]))
			return 0;
	return 1;
}

/* Ascending insertion sort of m doubles. */
static void sort_small(double *v, int m)
{
	for (int i = 1; i < m; i++) {
		double t = v[i];
		int j = i - 1;
		for (; j >= 0 && v[j] > t; j--)
			v[j + 1] = v[j];
		v[j + 1] = t;
	}
}

static double median_of(double *v, int m)
{
	sort_small(v, m);
	return m % 2 ? v[m / 2] : 0.5 * (v[m / 2 - 1] + v[m / 2]);
}

/* Per coordinate: sort the m values, cut t at each end, average the rest. */
static int trimmed(const float *const *x, const int *idx, int m, int t, size_t n, float *out)
{
	double *v = malloc((size_t)m * sizeof *v);
	if (!v)
		return FL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		double s = 0;
		for (int k = 0; k < m; k++)
			v[k] = x[idx[k]][i];
		sort_small(v, m);
		for (int k = t; k < m - t; k++)
			s += v[k];
		out[i] = (float)(s / (m - 2 * t));
	}
	free(v);
	return 0;
}

static int median_rule(const float *const *x, const int *idx, int m, size_t n, float *out,
                       lora_robust_stats *st)
{
	double *v = malloc((size_t)m * sizeof *v);
	if (!v)
		return FL_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		for (int k = 0; k < m; k++)
			v[k] = x[idx[k]][i];
		out[i] = (float)median_of(v, m);
	}
	free(v);
	st->rule = LORA_ROBUST_MEDIAN;
	st->selected = m;
	st->trimmed = m % 2 ? m - 1 : m - 2;
	return 0;
}

/* Weighted mean of the clients idx[0..m) with per-client delta scale sc[k]
 * (NULL: 1): out = g + sum w sc (x - g) / sum w. */
static void mean_of(const float *const *x, const double *w, const int *idx, const double *sc, int m,
                    const float *g, size_t n, float *out)
{
	double ws = 0;
	for (int k = 0; k < m; k++)
		ws += w[idx[k]];
	for (size_t i = 0; i < n; i++) {
		double s = 0;
		for (int k = 0; k < m; k++)
			s += w[idx[k]] * (sc ? sc[k] : 1.0) * ((double)x[idx[k]][i] - g[i]);
		out[i] = (float)(g[i] + s / ws);
	}
}

static double dist2(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		s += d * d;
	}
	return s;
}

static int krum_rule(const float *const *x, const double *w, const int *idx, int m, const float *g,
                     size_t n, const lora_robust_opts *o, float *out, lora_robust_stats *st)
{
	int f = o->krum_f, rv = 0;
	double *D = NULL, *score = NULL, *row = NULL;
	int *order = NULL, sel;

	if (f < 0)
		f = m >= 3 ? (m - 3) / 2 : 0;
	st->krum_f = f;
	if (m < 2 * f + 3) {
		st->fallback = 1;
		return median_rule(x, idx, m, n, out, st);
	}
	sel = o->krum_m > 0 ? o->krum_m : m - f;
	if (sel > m)
		sel = m;
	D = malloc((size_t)m * m * sizeof *D);
	score = malloc((size_t)m * sizeof *score);
	row = malloc((size_t)m * sizeof *row);
	order = malloc((size_t)m * sizeof *order);
	if (!D || !score || !row || !order) {
		rv = FL_ENOMEM;
		goto done;
	}
	for (int a = 0; a < m; a++) {
		D[a * m + a] = 0;
		for (int b = a + 1; b < m; b++)
			D[a * m + b] = D[b * m + a] = dist2(x[idx[a]], x[idx[b]], n);
	}
	for (int a = 0; a < m; a++) {
		int c = 0;
		double s = 0;
		for (int b = 0; b < m; b++)
			if (b != a)
				row[c++] = D[a * m + b];
		sort_small(row, c);
		for (int j = 0; j < m - f - 2; j++)
			s += row[j];
		score[a] = s;
	}
	/* stable selection by score: insertion sort of positions */
	for (int a = 0; a < m; a++) {
		int j = a - 1;
		for (; j >= 0 && score[order[j]] > score[a]; j--)
			order[j + 1] = order[j];
		order[j + 1] = a;
	}
	for (int k = 0; k < sel; k++)
		order[k] = idx[order[k]];
	mean_of(x, w, order, NULL, sel, g, n, out);
	st->rule = LORA_ROBUST_KRUM;
	st->selected = sel;
	st->dropped += m - sel;
done:
	free(D);
	free(score);
	free(row);
	free(order);
	return rv;
}

static int norm_bound_rule(const float *const *x, const double *w, const int *idx, int m,
                           const float *g, size_t n, const lora_robust_opts *o, float *out,
                           lora_robust_stats *st)
{
	double *nrm = malloc((size_t)m * sizeof *nrm), *tmp = malloc((size_t)m * sizeof *tmp);
	double S;
	if (!nrm || !tmp) {
		free(nrm);
		free(tmp);
		return FL_ENOMEM;
	}
	for (int k = 0; k < m; k++)
		nrm[k] = tmp[k] = sqrt(dist2(x[idx[k]], g, n));
	S = o->norm_bound > 0 ? o->norm_bound : o->norm_factor * median_of(tmp, m);
	/* tmp now holds the delta scales */
	for (int k = 0; k < m; k++) {
		tmp[k] = 1.0;
		if (nrm[k] > S) {
			tmp[k] = S / nrm[k];
			st->clipped++;
		}
	}
	mean_of(x, w, idx, tmp, m, g, n, out);
	st->rule = LORA_ROBUST_NORM_BOUND;
	st->selected = m;
	st->bound = S;
	free(nrm);
	free(tmp);
	return 0;
}

int lora_robust_combine(const float *const *x, const double *w, int K, const float *g, size_t n,
                        const lora_robust_opts *o, float *out, lora_robust_stats *st)
{
	int *idx, m = 0, rv;

	memset(st, 0, sizeof *st);
	st->bound = NAN;
	st->krum_f = -1;
	if (!x || !w || !g || !out || K <= 0 || lora_robust_opts_check(o) != 0)
		return FL_EINVAL;
	for (int k = 0; k < K; k++)
		if (!x[k] || !(w[k] > 0) || !isfinite(w[k]))
			return FL_EINVAL;
	if (!all_finite(g, n))
		return FL_ENONFINITE;
	idx = malloc((size_t)K * sizeof *idx);
	if (!idx)
		return FL_ENOMEM;
	for (int k = 0; k < K; k++)
		if (all_finite(x[k], n))
			idx[m++] = k;
	st->clients = K;
	st->rule = o->rule;
	st->dropped = K - m;
	if (m == 0) {
		free(idx);
		return FL_EQUORUM;
	}
	switch (o->rule) {
	case LORA_ROBUST_MEAN:
		mean_of(x, w, idx, NULL, m, g, n, out);
		st->selected = m;
		rv = 0;
		break;
	case LORA_ROBUST_NORM_BOUND:
		rv = norm_bound_rule(x, w, idx, m, g, n, o, out, st);
		break;
	case LORA_ROBUST_MEDIAN:
		rv = median_rule(x, idx, m, n, out, st);
		break;
	case LORA_ROBUST_TRIMMED: {
		int t = (int)floor(o->trim_frac * m);
		rv = trimmed(x, idx, m, t, n, out);
		st->selected = m;
		st->trimmed = 2 * t;
		break;
	}
	case LORA_ROBUST_KRUM:
		rv = krum_rule(x, w, idx, m, g, n, o, out, st);
		break;
	default:
		rv = FL_EINVAL;
	}
	free(idx);
	return rv;
}
