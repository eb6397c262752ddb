/*-------------------------------------------------------------------------
 *
 * settings.c
 *	  The settings a run's SQL executes under.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "medallion.h"

/*
 * Pins the settings that change a run's results, then the pipeline's own
 * (options.settings), in a new GUC nest level the caller pops with
 * AtEOXact_GUC(true, nestlevel).
 */
void
medallion_run_settings_push(Contract *contract, int *nestlevel)
{
	static const char *const pinned[][2] = {
		{"TimeZone", "UTC"},
		{"DateStyle", "ISO, YMD"},
		{"IntervalStyle", "postgres"},
		{"extra_float_digits", "1"},
		/*
		 * pg_temp last, named: unnamed it would be searched first for types
		 * and relations, and a caller's temporary type (an operator's, a
		 * superuser's) would run its code as the owner in the owner's snippets.
		 */
		{"search_path", "pg_catalog, public, pg_temp"},
		{"lc_monetary", "C"},
		{"lc_numeric", "C"},
		{"lc_time", "C"},

		/*
		 * Not a result but a cost: a run worker is a new backend, whose first
		 * JIT compilation loads LLVM (~50 ms) and then compiles (~20 ms; ~0.5 s
		 * once a plan's cost passes jit_optimize_above_cost), more than a
		 * 10k-row incremental run costs.  options.settings can set it back.
		 */
		{"jit", "off"},
	};
	ListCell   *n,
			   *v;
	int			i;

	*nestlevel = NewGUCNestLevel();
	for (i = 0; i < (int) lengthof(pinned); i++)
		(void) set_config_option(pinned[i][0], pinned[i][1], PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	if (contract)
		forboth(n, contract->setting_names, v, contract->setting_values)
			(void) set_config_option(lfirst(n), lfirst(v), PGC_USERSET, PGC_S_SESSION,
									 GUC_ACTION_SAVE, true, 0, false);
}
