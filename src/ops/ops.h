/*-------------------------------------------------------------------------
 *
 * ops.h
 *	  Declarations private to the operations room (src/ops/): the pipeline
 *	  state machine, its options, alerts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_OPS_H
#define MEDALLION_OPS_H

#include "medallion.h"

/* policy.c: the states of medallion.pipelines.state */
typedef enum PipelineState
{
	PIPELINE_ACTIVE,
	PIPELINE_PAUSED,
	PIPELINE_HALTED,
	PIPELINE_CIRCUIT_OPEN
} PipelineState;

/* policy.c: what happens to a pipeline */
typedef enum PipelineEvent
{
	PIPELINE_EVENT_PAUSE,
	PIPELINE_EVENT_RESUME,
	PIPELINE_EVENT_SUCCESS,
	PIPELINE_EVENT_FAILURE,			/* counted toward the breaker */
	PIPELINE_EVENT_FAILURE_TRIPS,	/* the breaker opens */
	PIPELINE_EVENT_FAILURE_HALTS	/* only an operator can fix it */
} PipelineEvent;

/* policy.c: a pipeline option, its type (for the typed check) and default */
typedef struct MedallionOption
{
	const char *name;
	const char *type;			/* a pg_catalog type name */
	const char *dflt;			/* NULL: none */
} MedallionOption;

extern const MedallionOption medallion_options[];	/* ends with a NULL name */

extern double medallion_option_usecs(const char *text);
extern PipelineState medallion_pipeline_state(const char *state);
extern const char *medallion_policy_next_state(const char *from, PipelineEvent event);
extern void medallion_policy_check_runnable(const Pipeline *p, bool scheduled);
extern bool medallion_policy_schedulable(const Pipeline *p);
extern void medallion_pause_fold(const char *pipeline);

/* schedule.c */
extern void medallion_require_pipeline(const char *name, Pipeline *p, bool lock);
extern void medallion_require_owned(const char *name, Pipeline *p, bool lock);
extern void medallion_drop_cron_job(const char *pipeline);
extern bool medallion_role_can_login(Oid role);

/* lifecycle.c: the end of a pipeline (also DROP OWNED's, ownership.c) */
extern bool medallion_layer_has_table(const char *layer);
extern List *medallion_pipeline_downstream(const char *name);
extern void medallion_pipeline_drop(const char *name, bool drop_table, bool cascade,
									List **dropped);

/* ownership.c: who owns a pipeline (alter_pipeline's "owner") */
extern void medallion_pipeline_set_owner(const Pipeline *p, const char *new_owner);

/* operators.c: who may run, trigger, pause, resume and replay */
extern bool medallion_may_operate(const Pipeline *p);
extern void medallion_require_operator(const Pipeline *p, const char *action);

/* alerts.c */
extern void medallion_alert_raise(const char *pipeline, const char *kind, const char *message);
extern void medallion_alert_resolve(const char *pipeline, const char *kind);
extern void medallion_alert_trim(const char *pipeline, const char *kind);

/* run.c: the layers run() accepts, and a run as run() makes it (graph.c's run_all) */
extern bool medallion_run_accepts_layer(const char *layer);
extern int64 medallion_run_manual(const char *pipeline);

#endif							/* MEDALLION_OPS_H */
