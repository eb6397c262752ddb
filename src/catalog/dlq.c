/*-------------------------------------------------------------------------
 *
 * dlq.c
 *	  Dead-letter queue writes.
 *
 * A record that cannot be processed is never dropped: it lands here with
 * the reason, where it came from and its length, and (unless its table
 * redacts personal data, or it is too long to keep whole) exactly as it came.
 *
 * Rows are written in batches, one INSERT ... SELECT FROM unnest() per batch,
 * through the catalog gateway: a caller that finds many bad records flushes
 * them as it goes, so its memory does not grow with their number.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "medallion.h"

/* A batch is written when it holds this many rows or bytes of payload. */
#define DLQ_BATCH_ROWS 1000
#define DLQ_BATCH_BYTES (8 * 1024 * 1024)

/* The columns written, in this order. */
enum
{
	COL_PIPELINE,
	COL_PAYLOAD,
	COL_MESSAGE,
	COL_TYPE,
	COL_SQLSTATE,
	COL_FIELD,
	COL_SOURCE_TABLE,
	COL_SOURCE_SEQ,
	COL_RUN_ID,
	COL_BATCH_ID,
	COL_FILE_NAME,
	COL_LINE,
	COL_LENGTH,
	DLQ_NCOLS
};

struct MedallionDlqWriter
{
	MemoryContext cxt;			/* the batch's values */
	int			n;
	Size		bytes;
	int64		written;
	bool		skip_pending;	/* see medallion_dlq_writer_skip_pending */
	Datum		values[DLQ_NCOLS][DLQ_BATCH_ROWS];
	bool		nulls[DLQ_NCOLS][DLQ_BATCH_ROWS];
};

/*
 * A writer whose memory lives in the current memory context.
 */
MedallionDlqWriter *
medallion_dlq_writer_create(void)
{
	MedallionDlqWriter *w = palloc0(sizeof(MedallionDlqWriter));

	w->cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion DLQ batch",
								   ALLOCSET_DEFAULT_SIZES);
	return w;
}

/*
 * Makes the writer leave out a row whose source row (pipeline and
 * source_seq) already has a dead letter, pending or settled: a silver run
 * that reads a source row again (after a restore, say) does not add it
 * twice, nor bring back one that was replayed after a correction or
 * discarded (the settled row says what became of it).
 */
void
medallion_dlq_writer_skip_pending(MedallionDlqWriter *w)
{
	w->skip_pending = true;
}

static void
set_text(MedallionDlqWriter *w, int col, const char *s, int len)
{
	w->nulls[col][w->n] = (s == NULL);
	if (s)
		w->values[col][w->n] = PointerGetDatum(cstring_to_text_with_len(s, len < 0 ? (int) strlen(s) : len));
}

static void
set_int8(MedallionDlqWriter *w, int col, int64 v, bool isnull)
{
	w->nulls[col][w->n] = isnull;
	w->values[col][w->n] = Int64GetDatum(v);
}

/*
 * Adds a row; the batch is written when full.  The entry is copied.
 */
void
medallion_dlq_writer_add(MedallionDlqWriter *w, const MedallionDlqEntry *e)
{
	MemoryContext old;

	if (w->n > 0 && (w->n == DLQ_BATCH_ROWS || w->bytes + e->payload_len > DLQ_BATCH_BYTES))
		medallion_dlq_writer_flush(w);

	old = MemoryContextSwitchTo(w->cxt);
	set_text(w, COL_PIPELINE, e->pipeline, -1);
	set_text(w, COL_PAYLOAD, e->payload, e->payload_len);
	set_text(w, COL_MESSAGE, e->error_message, -1);
	set_text(w, COL_TYPE, e->error_type, -1);
	set_text(w, COL_SQLSTATE, e->sqlstate, -1);
	set_text(w, COL_FIELD, e->field, -1);
	set_text(w, COL_SOURCE_TABLE, e->source_table, -1);
	set_int8(w, COL_SOURCE_SEQ, e->source_seq, e->source_seq <= 0);
	set_int8(w, COL_RUN_ID, e->run_id, e->run_id <= 0);
	set_text(w, COL_BATCH_ID, e->batch_id, -1);
	set_text(w, COL_FILE_NAME, e->file_name, -1);
	set_int8(w, COL_LINE, e->line_number, e->line_number <= 0);
	set_int8(w, COL_LENGTH, e->original_length, e->original_length <= 0);
	MemoryContextSwitchTo(old);

	w->bytes += (e->payload ? e->payload_len : 0) + 256;
	w->n++;
}

/*
 * True when medallion.dlq has the original_length column: a 0.1.0 catalog
 * that was not updated yet lacks it.
 */
static bool
dlq_has_length(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("dlq", nsp) : InvalidOid;

	return OidIsValid(relid) && get_attnum(relid, "original_length") != InvalidAttrNumber;
}

/*
 * The INSERT of a batch: the arrays $1... unnested side by side, in the
 * order the rows were added; COLS is the column list, ARGS the unnest()
 * calls, WHERE empty or the pending check.  (ROWS FROM: the multi-argument
 * unnest() shorthand needs an unqualified name.)
 */
#define DLQ_COLS_010 \
	"pipeline, original_payload, error_message, error_type, sqlstate, field, source_table, " \
	"source_seq, pipeline_run_id, batch_id, file_name, line_number"
#define DLQ_ARGS_010 \
	"pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), " \
	"pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), " \
	"pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), " \
	"pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12)"
#define DLQ_INSERT(COLS, ARGS, WHERE) \
	"INSERT INTO medallion.dlq (" COLS ") SELECT " COLS " " \
	"FROM ROWS FROM (" ARGS ") WITH ORDINALITY AS u(" COLS ", n) " WHERE "ORDER BY u.n"
#define DLQ_SOURCE_ROW_NEW \
	"WHERE NOT EXISTS (SELECT 1 FROM medallion.dlq d " \
	"WHERE d.pipeline OPERATOR(pg_catalog.=) u.pipeline " \
	"AND d.source_seq OPERATOR(pg_catalog.=) u.source_seq) "

/*
 * Writes the rows added so far, in one statement, as the catalog owner.
 */
void
medallion_dlq_writer_flush(MedallionDlqWriter *w)
{
	/* [0.1.0 catalog (no original_length)][skip pending] */
	static const char *const insert_sql[2][2] = {
		{
			DLQ_INSERT(DLQ_COLS_010 ", original_length", DLQ_ARGS_010 ", pg_catalog.unnest($13)", ""),
			DLQ_INSERT(DLQ_COLS_010 ", original_length", DLQ_ARGS_010 ", pg_catalog.unnest($13)", DLQ_SOURCE_ROW_NEW)
		},
		{
			DLQ_INSERT(DLQ_COLS_010, DLQ_ARGS_010, ""),
			DLQ_INSERT(DLQ_COLS_010, DLQ_ARGS_010, DLQ_SOURCE_ROW_NEW)
		}
	};
	static const Oid elemtypes[DLQ_NCOLS] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, INT8OID, INT8OID, TEXTOID, TEXTOID, INT8OID, INT8OID};
	Oid			argtypes[DLQ_NCOLS];
	Datum		args[DLQ_NCOLS];
	bool		old_catalog = !dlq_has_length();
	int			ncols = old_catalog ? DLQ_NCOLS - 1 : DLQ_NCOLS;
	MemoryContext old;
	int			dims[1];
	int			lbs[1] = {1};
	int			i;

	if (w->n == 0)
		return;
	old = MemoryContextSwitchTo(w->cxt);
	dims[0] = w->n;
	for (i = 0; i < ncols; i++)
	{
		bool		text = (elemtypes[i] == TEXTOID);

		argtypes[i] = text ? TEXTARRAYOID : INT8ARRAYOID;
		args[i] = PointerGetDatum(construct_md_array(w->values[i], w->nulls[i], 1, dims, lbs,
													 elemtypes[i], text ? -1 : 8,
													 text ? false : FLOAT8PASSBYVAL,
													 text ? TYPALIGN_INT : TYPALIGN_DOUBLE));
	}
	/* rows left out as already in the DLQ are not counted */
	w->written += (int64) medallion_catalog_exec(insert_sql[old_catalog][w->skip_pending],
												 ncols, argtypes, args, NULL, SPI_OK_INSERT);
	MemoryContextSwitchTo(old);
	medallion_dlq_writer_discard(w);
}

/*
 * The rows the writer has inserted so far (those it left out not counted).
 */
int64
medallion_dlq_writer_written(MedallionDlqWriter *w)
{
	return w->written;
}

/*
 * Forgets the rows not written yet (their transaction is being redone).
 */
void
medallion_dlq_writer_discard(MedallionDlqWriter *w)
{
	MemoryContextReset(w->cxt);
	w->n = 0;
	w->bytes = 0;
}

/*
 * Adds one row to medallion.dlq at once, as the catalog owner.
 */
void
medallion_dlq_add(const MedallionDlqEntry *e)
{
	MedallionDlqWriter *w = medallion_dlq_writer_create();

	medallion_dlq_writer_add(w, e);
	medallion_dlq_writer_flush(w);
	MemoryContextDelete(w->cxt);
	pfree(w);
}
