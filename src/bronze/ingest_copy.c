/*-------------------------------------------------------------------------
 *
 * ingest_copy.c
 *	  Feeding COPY: the good records of an ingest are streamed into the
 *	  bronze table through COPY's own machinery (BeginCopyFrom with a
 *	  data-source callback), the bad ones handed to the DLQ writer.
 *
 * If COPY nevertheless hits a data error (jsonb's input function is stricter
 * than the pre-check in a few corners), its subtransaction is rolled back
 * (with the DLQ rows written so far) and the input is validated record by
 * record with jsonb's own input function, in subtransactions that write
 * nothing, then loaded again without the culprits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/rls.h"

#include "compat.h"
#include "medallion.h"
#include "ingest.h"

#if MEDALLION_COPY_CONSTANT_COLUMNS
#include "commands/copyfrom_internal.h"
#include "executor/executor.h"
#include "rewrite/rewriteHandler.h"
#include "utils/lsyscache.h"
#endif

/* COPY's quote and delimiter bytes: valid JSON text never contains them. */
#define COPY_QUOTE '\x01'
#define COPY_DELIM '\x02'

/*
 * The ingest whose COPY is running: COPY's data-source callback takes no
 * argument.  Set only around CopyFrom by copy_into_bronze, which restores the
 * previous value however the COPY ends (an error included), so that it never
 * points at the state of an ingest that is over; saving the previous value
 * lets a trigger on the table ingest into another bronze table meanwhile.
 */
static IngestState *current_ingest = NULL;

static void append_copy_field(StringInfo buf, const char *s, int len);

/*
 * Sends a record to the DLQ writer.  Its payload is kept as it came (invalid
 * bytes in bytea's escape form, since text cannot hold them; an over-long
 * record's head cut at a character boundary), unless the table redacts.
 */
void
medallion_ingest_keep_bad(IngestState *st, Record *rec, const char *message, const char *sqlstate)
{
	MedallionDlqEntry e = {0};
	char	   *payload = rec->raw;
	int			len = rec->raw_len;

	if (st->redact)
		payload = NULL;
	else
	{
		if (rec->oversized)
		{
			int			cut = 0;

			while (cut < pg_database_encoding_max_length() && cut < len &&
				   !pg_verifymbstr(payload, len - cut, true))
				cut++;
			if (pg_verifymbstr(payload, len - cut, true))
				len -= cut;
		}
		if (!pg_verifymbstr(payload, len, true))
		{
			bytea	   *bytes = (bytea *) palloc(len + VARHDRSZ);

			SET_VARSIZE(bytes, len + VARHDRSZ);
			memcpy(VARDATA(bytes), payload, len);
			payload = DatumGetCString(DirectFunctionCall1(byteaout, PointerGetDatum(bytes)));
			len = strlen(payload);
		}
	}

	e.pipeline = st->target.pipeline;
	e.payload = payload;
	e.payload_len = payload ? len : 0;
	e.error_message = message;
	e.error_type = "parse";
	e.sqlstate = sqlstate;
	e.source_table = st->target.pipeline;
	e.batch_id = st->batch_id;
	e.file_name = st->file_name;
	e.line_number = rec->line;
	e.original_length = rec->oversized ? rec->total_len : rec->raw_len;
	medallion_dlq_writer_add(st->dlq, &e);
	st->nbad++;
}


/*
 * Appends a field to a COPY row, quoted, doubling the quote byte.
 */
static void
append_copy_field(StringInfo buf, const char *s, int len)
{
	const char *q;

	appendStringInfoChar(buf, COPY_QUOTE);
	while ((q = memchr(s, COPY_QUOTE, len)) != NULL)
	{
		appendBinaryStringInfo(buf, s, q - s + 1);
		appendStringInfoChar(buf, COPY_QUOTE);
		len -= q - s + 1;
		s = q + 1;
	}
	appendBinaryStringInfo(buf, s, len);
	appendStringInfoChar(buf, COPY_QUOTE);
}

/*
 * Pulls records until the COPY buffer has something to hand over.  A json
 * document found broken ends the COPY with a data error.
 */
static void
produce_rows(IngestState *st, int wanted)
{
	Record		rec;
	MemoryContext old = MemoryContextSwitchTo(st->record_cxt);

	/* Keep only what COPY has not taken yet: the buffer stays one read long. */
	if (st->copypos > 0)
	{
		memmove(st->copybuf.data, st->copybuf.data + st->copypos, st->copybuf.len - st->copypos);
		st->copybuf.len -= st->copypos;
		st->copybuf.data[st->copybuf.len] = '\0';
		st->copypos = 0;
	}
	while (st->copybuf.len - st->copypos < wanted && !st->input_done)
	{
		const char *sqlstate = NULL;
		const char *reason;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(st->record_cxt);
		if (!medallion_ingest_next_record(st, &rec))
		{
			if (st->doc_broken)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_JSON_TEXT),
						 errmsg("json document is neither an object nor an array of objects")));
			st->input_done = true;
			break;
		}
		if (st->skip_pos < st->nskip && st->skip[st->skip_pos] == rec.ordinal)
		{
			st->skip_pos++;
			continue;			/* found bad by the precise pass: already kept */
		}
		if (rec.bad)
		{
			medallion_ingest_keep_bad(st, &rec, rec.message, rec.sqlstate);
			continue;
		}
		reason = medallion_ingest_check_record(st, &rec, &sqlstate);
		if (reason)
		{
			medallion_ingest_keep_bad(st, &rec, reason, sqlstate);
			continue;
		}
		MemoryContextSwitchTo(st->cxt);
		append_copy_field(&st->copybuf, rec.data, rec.len);
		appendBinaryStringInfo(&st->copybuf, st->prefix, st->prefix_len);
		MemoryContextSwitchTo(st->record_cxt);
	}
	MemoryContextSwitchTo(old);
}

/*
 * COPY's data source: hands over encoded rows.
 */
static int
copy_source(void *outbuf, int minread, int maxread)
{
	IngestState *st = current_ingest;
	int			n;

	if (st == NULL)
		elog(ERROR, "medallion ingest: COPY data requested with no ingest in progress");
	produce_rows(st, maxread);
	n = Min(maxread, st->copybuf.len - st->copypos);
	memcpy(outbuf, st->copybuf.data + st->copypos, n);
	st->copypos += n;
	return n;
}

/*
 * Rewinds the input for another pass.
 */
static void
rewind_input(IngestState *st)
{
	medallion_ingest_rewind_records(st);
	st->skip_pos = 0;
	resetStringInfo(&st->copybuf);
	st->copypos = 0;
	st->input_done = false;
}

#if MEDALLION_COPY_CONSTANT_COLUMNS
/*
 * Has COPY fill a column of every row with one value, the way it fills the
 * columns left out of its list with their defaults: the batch id and the file
 * name then need not go through COPY's parser once per row.  This reaches into
 * COPY's private state (PG15's CopyFromState: defmap[i] is an attribute
 * index, defexprs[i] its expression, i < num_defaults, in arrays sized for
 * every attribute), hence compat.h's version guard.  The value goes through
 * the column's input function, as it would in a COPY row.
 */
static void
copy_set_constant(CopyFromState cstate, Relation rel, const char *column, const char *value)
{
	AttrNumber	attnum = attnameAttNum(rel, column, false);
	Form_pg_attribute att;
	MemoryContext old;
	Oid			infunc;
	Oid			ioparam;
	Datum		datum;
	int			i;

	if (attnum <= 0)
		elog(ERROR, "bronze table \"%s\" has no column \"%s\"",
			 RelationGetRelationName(rel), column);
	att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);
	if (value == NULL && build_column_default(rel, attnum) == NULL)
		return;					/* COPY leaves it NULL already */
	for (i = 0; i < cstate->num_defaults; i++)
		if (cstate->defmap[i] == attnum - 1)
			break;				/* replace the column's own default */
	old = MemoryContextSwitchTo(cstate->copycontext);
	getTypeInputInfo(att->atttypid, &infunc, &ioparam);
	datum = OidInputFunctionCall(infunc, (char *) value, ioparam, att->atttypmod);
	cstate->defexprs[i] = ExecInitExpr((Expr *) makeConst(att->atttypid, att->atttypmod,
														  att->attcollation, att->attlen,
														  datum, value == NULL,
														  att->attbyval),
									   NULL);
	cstate->defmap[i] = attnum - 1;
	if (i == cstate->num_defaults)
		cstate->num_defaults++;
	MemoryContextSwitchTo(old);
}
#endif

/*
 * One COPY of the whole input into the bronze table.
 */
static uint64
copy_into_bronze(IngestState *st)
{
	Relation	rel = table_open(st->target.relid, RowExclusiveLock);
	ParseState *pstate = make_parsestate(NULL);
	List	   *cols = list_make1(makeString("_raw"));
	List	   *opts = list_make4(makeDefElem("format", (Node *) makeString("csv"), -1),
								  makeDefElem("delimiter", (Node *) makeString("\x02"), -1),
								  makeDefElem("quote", (Node *) makeString("\x01"), -1),
								  makeDefElem("encoding",
											  (Node *) makeString((char *) GetDatabaseEncodingName()), -1));
	CopyFromState cstate;
	uint64		processed;
	IngestState *outer;

	/* Each row carries the batch id and file name, unless COPY can add them. */
	if (!MEDALLION_COPY_CONSTANT_COLUMNS)
		cols = lappend(lappend(cols, makeString("_batch_id")), makeString("_file_name"));

	/* COPY's executor state needs the table in the range table, as DoCopy does. */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	outer = current_ingest;
	current_ingest = st;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source, cols, opts);
#if MEDALLION_COPY_CONSTANT_COLUMNS
		copy_set_constant(cstate, rel, "_batch_id", st->batch_id);
		copy_set_constant(cstate, rel, "_file_name", st->file_name);
#endif
		processed = CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		current_ingest = outer;
	}
	PG_END_TRY();
	free_parsestate(pstate);
	table_close(rel, NoLock);
	return processed;
}

/* A record given to jsonb's input function. */
typedef struct JsonbAttempt
{
	char	   *data;
	int			len;
} JsonbAttempt;

static void
attempt_jsonb(void *arg)
{
	JsonbAttempt *a = arg;

	(void) DirectFunctionCall1(jsonb_in, CStringGetDatum(pnstrdup(a->data, a->len)));
}

/*
 * Tells whether jsonb's input function takes a record, in a subtransaction
 * that writes nothing.  Only data errors make a record bad.
 */
static char *
jsonb_rejects(char *data, int len, const char **sqlstate)
{
	JsonbAttempt a = {data, len};
	ErrorData  *edata = medallion_try(attempt_jsonb, &a, false);

	if (edata == NULL)
		return NULL;
	*sqlstate = pstrdup(unpack_sql_state(edata->sqlerrcode));
	return edata->message;
}

/*
 * The precise pass: every record through jsonb's input function.  The bad
 * ones go to the DLQ; their sorted ordinals make the next COPY skip them.
 */
static void
find_bad_records(IngestState *st)
{
	Record		rec;
	int			cap = 16;
	MemoryContext old;

	rewind_input(st);
	st->skip = palloc(sizeof(int64) * cap);
	st->nskip = 0;
	old = MemoryContextSwitchTo(st->record_cxt);
	for (;;)
	{
		const char *sqlstate = NULL;
		char	   *reason;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(st->record_cxt);
		if (!medallion_ingest_next_record(st, &rec))
			break;
		if (rec.bad || medallion_ingest_check_record(st, &rec, &sqlstate) != NULL)
			continue;			/* the load pass keeps it */
		reason = jsonb_rejects(rec.data, rec.len, &sqlstate);
		if (reason == NULL)
			continue;
		MemoryContextSwitchTo(st->cxt);
		medallion_ingest_keep_bad(st, &rec, reason, sqlstate);
		if (st->nskip == cap)
		{
			cap *= 2;
			st->skip = repalloc_huge(st->skip, sizeof(int64) * cap);
		}
		st->skip[st->nskip++] = rec.ordinal;
		MemoryContextSwitchTo(st->record_cxt);
	}
	MemoryContextSwitchTo(old);
}

/* One COPY of the input, as a subtransaction's work. */
typedef struct CopyAttempt
{
	IngestState *st;
	uint64		processed;
} CopyAttempt;

static void
attempt_copy(void *arg)
{
	CopyAttempt *c = arg;

	c->processed = copy_into_bronze(c->st);
}

/*
 * Keeps a json document that is not one as a single bad record: it lands
 * nothing.
 */
static void
keep_broken_document(IngestState *st)
{
	const char *reason = st->doc_broken;
	Record		rec;

	if (!medallion_ingest_whole_input(st, &rec))
		return;
	medallion_ingest_keep_bad(st, &rec, reason, "22032");
}

/*
 * Loads the whole input: a COPY in a subtransaction; on a data error, the
 * precise pass then a second COPY.  Returns the rows landed.
 */
uint64
medallion_ingest_load(IngestState *st)
{
	CopyAttempt first = {st, 0};
	bool		retry;

	rewind_input(st);
	retry = (medallion_try(attempt_copy, &first, false) != NULL);
	if (!retry)
		return first.processed;

	/* The DLQ rows of the failed COPY went with its subtransaction. */
	medallion_dlq_writer_discard(st->dlq);
	st->nbad = 0;
	if (st->format == FORMAT_JSON && st->doc_broken == NULL)
	{
		/*
		 * The COPY may have stopped before a break in the array: look for
		 * one first, so that the precise pass writes nothing in vain.
		 */
		Record		rec;

		rewind_input(st);
		while (medallion_ingest_next_record(st, &rec))
			CHECK_FOR_INTERRUPTS();
	}
	if (st->doc_broken)
	{
		keep_broken_document(st);
		return 0;
	}
	find_bad_records(st);
	rewind_input(st);
	return copy_into_bronze(st);
}

/*
 * The end of every COPY row of an ingest: the batch id and file name columns
 * when COPY cannot add them itself, then the line end.
 */
void
medallion_ingest_copy_prefix(IngestState *st)
{
	StringInfoData p;

	initStringInfo(&p);
	if (!MEDALLION_COPY_CONSTANT_COLUMNS)
	{
		/* copy_into_bronze sends these two columns in every row */
		appendStringInfoChar(&p, COPY_DELIM);
		append_copy_field(&p, st->batch_id, strlen(st->batch_id));
		appendStringInfoChar(&p, COPY_DELIM);
		if (st->file_name)
			append_copy_field(&p, st->file_name, strlen(st->file_name));
	}
	appendStringInfoChar(&p, '\n');
	st->prefix = p.data;
	st->prefix_len = p.len;
}
