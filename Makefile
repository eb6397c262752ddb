# medallion: PGXS build.  `make && make install`, then test/run for every suite.

EXTENSION  = medallion
MODULE_big = medallion
# Rooms by layer (docs/architecture.md): every .c of src/ and of its room folders.
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard $(srcdir)/src/*.c $(srcdir)/src/*/*.c)))
PG_CPPFLAGS = -I$(srcdir)/src

# 0.1.0 is released and frozen: changes go into the upgrade script.  The full
# 0.2.0 script is built as 0.1.0 followed by the upgrade, so that a fresh
# install and ALTER EXTENSION UPDATE run the very same statements.
DATA = sql/medallion--0.1.0.sql sql/medallion--0.1.0--0.2.0.sql
DATA_built = sql/medallion--0.2.0.sql
PGFILEDESC = "medallion - data pipelines (bronze, silver, gold) inside PostgreSQL"

# pg_regress suites (test/sql/NAME.sql, test/expected/NAME.out), in this order;
# sql/ holds the install scripts only.
REGRESS = extension bronze_ingest schema_contract gold_results schema_evolve
REGRESS_OPTS = --inputdir=test --outputdir=test --load-extension=medallion

# Isolation specs: test/isolation/specs/NAME.spec, test/isolation/expected/NAME.out.
ISOLATION = backfill_during_runs bronze_batch_race bronze_partition_create bronze_partition_premake capture_concurrent \
	silver_out_of_order silver_concurrent_runs silver_ingest_during_run \
	silver_replay_during_run silver_repeatable_read silver_run_same_xact \
	ops_pause_during_run schema_contract_during_run graph_loop_race gold_swap gold_changes_concurrent ddl_during_run ops_rename_during_run \
	gold_backfill_swap
# replays (issue 13)
ISOLATION += silver_replay_quarantine_during_run bronze_dlq_replay_race
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation

SHLIB_LINK += -lcurl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

sql/medallion--0.2.0.sql: sql/medallion--0.1.0.sql sql/medallion--0.1.0--0.2.0.sql
	{ cat $<; echo; echo '-- ---- medallion--0.1.0--0.2.0.sql ----'; \
	  sed '/^\\echo /d' sql/medallion--0.1.0--0.2.0.sql; } > $@
