/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  Landing data in bronze tables: ingest(), ingest_text(), ingest_file().
 *
 * Text input (ndjson, a json array, csv) is cut into records by
 * ingest_records.c over the readers of ingest_reader.c, with bounded memory
 * whatever the input: a record longer than medallion.max_record_size goes to
 * the DLQ cut to its first 64 kB, with its length.  Each record is checked (jsonscan.c's one-pass
 * scan, and the non-throwing JSON parser when that scan has doubts), and the
 * good ones are streamed into the bronze table through COPY's own machinery
 * (BeginCopyFrom with a data-source callback): no per-row SPI, no
 * subtransaction per row.  Bad records are written to medallion.dlq in
 * batches as they are found, exactly as they came, unless the table redacts
 * personal data: then only where they were, their length and the reason are
 * kept.  Records nested deeper than MEDALLION_MAX_JSON_DEPTH are bad too: the
 * recursive parsers would exhaust the stack on them.
 *
 * The pre-check is the JSON grammar; jsonb's input function is stricter in a
 * few corners (e.g. numbers out of numeric's range).  If COPY nevertheless
 * hits a data error, its subtransaction is rolled back (with the DLQ rows
 * written so far) and the input is validated record by record with jsonb's
 * own input function, in subtransactions that write nothing, then loaded
 * again without the culprits.  A json document whose array is broken (not
 * terminated, an empty element, text after it) is found the same way, as the
 * streaming reader reaches the break: it lands nothing and is one DLQ row.
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

static const char *const format_names[] = {"ndjson", "json", "csv"};

/*
 * The ingest whose COPY is running: COPY's data-source callback takes no
 * argument.  Set only around CopyFrom by copy_into_bronze, which restores the
 * previous value however the COPY ends (an error included), so that it never
 * points at the state of an ingest that is over; saving the previous value
 * lets a trigger on the table ingest into another bronze table meanwhile.
 */
static IngestState *current_ingest = NULL;

PG_FUNCTION_INFO_V1(medallion_ingest);
PG_FUNCTION_INFO_V1(medallion_ingest_text);
PG_FUNCTION_INFO_V1(medallion_ingest_file);

static void append_copy_field(StringInfo buf, const char *s, int len);

/* ---------------------------------------------------------------------------
 * Feeding COPY
 * ---------------------------------------------------------------------------
 */

/*
 * Sends a record to the DLQ writer.  Its payload is kept as it came (invalid
 * bytes in bytea's escape form, since text cannot hold them; an over-long
 * record's head cut at a character boundary), unless the table redacts.
 */
static void
keep_bad(IngestState *st, Record *rec, const char *message, const char *sqlstate)
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
			keep_bad(st, &rec, rec.message, rec.sqlstate);
			continue;
		}
		reason = medallion_ingest_check_record(st, &rec, &sqlstate);
		if (reason)
		{
			keep_bad(st, &rec, reason, sqlstate);
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
		keep_bad(st, &rec, reason, sqlstate);
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
	keep_bad(st, &rec, reason, "22032");
}

/*
 * Loads the whole input: a COPY in a subtransaction; on a data error, the
 * precise pass then a second COPY.  Returns the rows landed.
 */
static uint64
load_input(IngestState *st)
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

/* ---------------------------------------------------------------------------
 * Shared by the SQL entry points
 * ---------------------------------------------------------------------------
 */

static IngestFormat
parse_format(text *format)
{
	char	   *f = text_to_cstring(format);

	if (pg_strcasecmp(f, "ndjson") == 0 || pg_strcasecmp(f, "jsonl") == 0)
		return FORMAT_NDJSON;
	if (pg_strcasecmp(f, "json") == 0)
		return FORMAT_JSON;
	if (pg_strcasecmp(f, "csv") == 0)
		return FORMAT_CSV;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized ingest format \"%s\"", f),
			 errhint("Valid formats are \"ndjson\", \"json\" and \"csv\".")));
	return FORMAT_NDJSON;		/* keep compiler quiet */
}

/*
 * True when the bronze table redacts personal data (its medallion_redact
 * trigger): then a record that cannot land is not stored in the DLQ either,
 * since nothing could remove those keys from text that does not parse.
 */
static bool
table_redacts(Oid relid)
{
	Relation	rel = table_open(relid, AccessShareLock);
	bool		found = false;
	int			i;

	for (i = 0; rel->trigdesc && i < rel->trigdesc->numtriggers; i++)
		if (strcmp(rel->trigdesc->triggers[i].tgname, "medallion_redact") == 0)
			found = true;
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Opens the target for ingestion by the current user: a medallion bronze
 * table the user may insert into, with today's partitions in place.
 */
static void
open_target(Oid relid, IngestState *st)
{
	BronzeTarget *target = &st->target;

	medallion_bronze_open(relid, target);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", quote_qualified_identifier("bronze", target->relname)),
				 errhint("Ingesting needs the INSERT privilege on the bronze table.")));
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot ingest into table \"bronze.%s\" with row-level security enabled",
						target->relname)));
	medallion_bronze_ensure_partitions(target);
	st->redact = table_redacts(relid);
	st->limit = (size_t) medallion_max_payload_mb * 1024 * 1024;
}

/*
 * Tells whether a batch id has landed in a bronze pipeline already.
 */
static bool
batch_landed(const char *pipeline, const char *batch_id)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	values[0] = CStringGetTextDatum(pipeline);
	values[1] = CStringGetTextDatum(batch_id);
	return medallion_catalog_exec("SELECT FROM medallion.batches "
								  "WHERE pipeline OPERATOR(pg_catalog.=) $1 "
								  "AND batch_id OPERATOR(pg_catalog.=) $2",
								  2, argtypes, values, NULL, SPI_OK_SELECT) > 0;
}

static void
report_landed(BronzeTarget *target, const char *batch_id)
{
	ereport(NOTICE,
			(errmsg("batch \"%s\" already landed in \"bronze.%s\", nothing ingested",
					batch_id, target->relname)));
}

/*
 * Claims the batch, or reports that it landed already.  A batch without an
 * id gets a fresh one.
 */
static bool
claim_batch(BronzeTarget *target, const char **batch_id, const char *file_name)
{
	if (*batch_id == NULL)
		*batch_id = DatumGetCString(DirectFunctionCall1(uuid_out,
														DirectFunctionCall1(gen_random_uuid, (Datum) 0)));
	else if ((*batch_id)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch_id must not be empty"),
				 errhint("Pass NULL to have one generated.")));

	if (medallion_catalog_claim_batch(target->pipeline, *batch_id, file_name))
		return true;
	report_landed(target, *batch_id);
	return false;
}

/*
 * Writes the last bad records and the batch's counts; warns when nothing
 * could land.
 */
static void
finish_ingest(IngestState *st, uint64 landed)
{
	medallion_dlq_writer_flush(st->dlq);
	medallion_catalog_finish_batch(st->target.pipeline, st->batch_id,
								   (int64) landed, st->nbad);
	if (landed == 0 && st->nbad == 0)
		ereport(WARNING,
				(errmsg("batch \"%s\" holds no records", st->batch_id),
				 errdetail("The input is empty; nothing was ingested into \"bronze.%s\".",
						   st->target.relname)));
	else if (landed == 0)
		ereport(WARNING,
				(errmsg("no record of batch \"%s\" could be ingested", st->batch_id),
				 errdetail_plural("%lld record went to medallion.dlq.",
								  "%lld records went to medallion.dlq.",
								  st->nbad, (long long) st->nbad)));
	else if (st->nbad > 0)
		ereport(NOTICE,
				(errmsg_plural("%lld record could not be parsed and went to medallion.dlq",
							   "%lld records could not be parsed and went to medallion.dlq",
							   st->nbad, (long long) st->nbad)));
}

/*
 * Prepares an ingest of text or a file (the reader is set up by the caller).
 */
static void
state_init(IngestState *st, IngestFormat format, const char *batch_id,
		   const char *file_name)
{
	StringInfoData p;

	st->cxt = CurrentMemoryContext;
	st->record_cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion ingest record",
										   ALLOCSET_DEFAULT_SIZES);
	st->dlq = medallion_dlq_writer_create();
	st->format = format;
	st->batch_id = batch_id;
	st->file_name = file_name;
	initStringInfo(&st->copybuf);
	initStringInfo(&st->scratch);
	initStringInfo(&st->unix_lines);
	initStringInfo(&p);
	if (!MEDALLION_COPY_CONSTANT_COLUMNS)
	{
		/* copy_into_bronze sends these two columns in every row */
		appendStringInfoChar(&p, COPY_DELIM);
		append_copy_field(&p, batch_id, strlen(batch_id));
		appendStringInfoChar(&p, COPY_DELIM);
		if (file_name)
			append_copy_field(&p, file_name, strlen(file_name));
	}
	appendStringInfoChar(&p, '\n');
	st->prefix = p.data;
	st->prefix_len = p.len;
}

static const char *
optional_text(FunctionCallInfo fcinfo, int argno)
{
	return PG_ARGISNULL(argno) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

static void
require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", name)));
}

/*
 * medallion.ingest(target, payload jsonb, batch_id, file_name): lands an
 * object or an array of objects; other values go to the DLQ.  The INSERT
 * runs as the caller, like the COPY of the other entry points.
 */
Datum
medallion_ingest(PG_FUNCTION_ARGS)
{
	IngestState st = {0};
	Jsonb	   *payload;
	const char *batch_id;
	const char *file_name;
	Oid			argtypes[3] = {JSONBOID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	uint64		landed = 0;
	int			ret;

	require_arg(fcinfo, 0, "target");
	require_arg(fcinfo, 1, "payload");
	payload = PG_GETARG_JSONB_P(1);
	batch_id = optional_text(fcinfo, 2);
	file_name = optional_text(fcinfo, 3);

	open_target(PG_GETARG_OID(0), &st);
	if (!claim_batch(&st.target, &batch_id, file_name))
		PG_RETURN_INT64(0);
	st.cxt = CurrentMemoryContext;
	st.dlq = medallion_dlq_writer_create();
	st.batch_id = batch_id;
	st.file_name = file_name;

	values[0] = JsonbPGetDatum(payload);
	values[1] = CStringGetTextDatum(batch_id);
	if (file_name)
		values[2] = CStringGetTextDatum(file_name);
	else
		nulls[2] = 'n';

	if (JB_ROOT_IS_SCALAR(payload) || JB_ROOT_IS_OBJECT(payload))
	{
		if (JB_ROOT_IS_OBJECT(payload))
		{
			SPI_connect();
			ret = SPI_execute_with_args(psprintf("INSERT INTO %s (_raw, _batch_id, _file_name) "
												 "VALUES ($1, $2, $3)",
												 quote_qualified_identifier("bronze", st.target.relname)),
										3, argtypes, values, nulls, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "could not insert into bronze: SPI error %d", ret);
			landed = SPI_processed;
			SPI_finish();
		}
		else
		{
			Record		rec = {0};

			rec.raw = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
			rec.raw_len = strlen(rec.raw);
			rec.line = 1;
			keep_bad(&st, &rec, "payload is neither a JSON object nor an array of objects", "22032");
		}
	}
	else
	{
		JsonbIterator *it = JsonbIteratorInit(&payload->root);
		JsonbValue	v;
		JsonbIteratorToken tok;
		int64		pos = 0;

		SPI_connect();
		ret = SPI_execute_with_args(psprintf("INSERT INTO %s (_raw, _batch_id, _file_name) "
											 "SELECT e, $2, $3 FROM pg_catalog.jsonb_array_elements($1) e "
											 "WHERE pg_catalog.jsonb_typeof(e) OPERATOR(pg_catalog.=) "
											 "'object'::pg_catalog.text",
											 quote_qualified_identifier("bronze", st.target.relname)),
									3, argtypes, values, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "could not insert into bronze: SPI error %d", ret);
		landed = SPI_processed;
		SPI_finish();

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			Record		rec = {0};
			Jsonb	   *elem;

			CHECK_FOR_INTERRUPTS();
			if (tok != WJB_ELEM)
				continue;
			pos++;
			if (v.type == jbvBinary && JsonContainerIsObject(v.val.binary.data))
				continue;
			elem = JsonbValueToJsonb(&v);
			rec.raw = JsonbToCString(NULL, &elem->root, VARSIZE(elem));
			rec.raw_len = strlen(rec.raw);
			rec.line = pos;
			keep_bad(&st, &rec, "array element is not a JSON object", "22032");
		}
	}

	finish_ingest(&st, landed);
	PG_RETURN_INT64((int64) landed);
}

/*
 * medallion.ingest_text(target, payload text, format, batch_id, file_name)
 */
Datum
medallion_ingest_text(PG_FUNCTION_ARGS)
{
	IngestState st = {0};
	text	   *payload;
	IngestFormat format;
	const char *batch_id;
	const char *file_name;
	uint64		landed;

	require_arg(fcinfo, 0, "target");
	require_arg(fcinfo, 1, "payload");
	require_arg(fcinfo, 2, "format");
	format = parse_format(PG_GETARG_TEXT_PP(2));
	payload = PG_GETARG_TEXT_PP(1);
	batch_id = optional_text(fcinfo, 3);
	file_name = optional_text(fcinfo, 4);

	open_target(PG_GETARG_OID(0), &st);
	if (!claim_batch(&st.target, &batch_id, file_name))
		PG_RETURN_INT64(0);

	state_init(&st, format, batch_id, file_name);
	medallion_reader_init_memory(&st.reader, VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload),
								 st.limit);
	landed = load_input(&st);
	finish_ingest(&st, landed);
	PG_RETURN_INT64((int64) landed);
}

/*
 * medallion.ingest_file(target, path, format, batch_id): a server-side file,
 * given by its absolute path.  Without a batch id the file's identity serves
 * (its resolved path, the format, and the opened file's device, inode, size
 * and modification time), so loading the same file again is a no-op, while
 * loading it again in another format is not.
 */
Datum
medallion_ingest_file(PG_FUNCTION_ARGS)
{
	IngestState st = {0};
	IngestFormat format;
	const char *batch_id;
	char	   *path;
	FileIdentity id;
	uint64		landed;

	require_arg(fcinfo, 0, "target");
	require_arg(fcinfo, 1, "path");
	require_arg(fcinfo, 2, "format");
	path = text_to_cstring(PG_GETARG_TEXT_PP(1));
	format = parse_format(PG_GETARG_TEXT_PP(2));
	batch_id = optional_text(fcinfo, 3);

	if (!superuser() && !has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read server files"),
				 errdetail("Only roles with privileges of the \"pg_read_server_files\" role may ingest files."),
				 errhint("Use medallion.ingest_text() to send the data from the client.")));

	open_target(PG_GETARG_OID(0), &st);
	medallion_reader_open_file(&st.reader, path, st.limit, &id);
	if (batch_id == NULL)
	{
		/* 0.1.0 named a file by the path as given, its size and mtime. */
		char	   *v1 = psprintf("file:%s:%lld:%lld", path, (long long) id.size,
								  (long long) id.mtime);

		if (batch_landed(st.target.pipeline, v1))
		{
			report_landed(&st.target, v1);
			medallion_reader_close(&st.reader);
			PG_RETURN_INT64(0);
		}
		batch_id = psprintf("file:%s:%s:%llu:%llu:%lld:%lld", id.realpath, format_names[format],
							(unsigned long long) id.dev, (unsigned long long) id.ino,
							(long long) id.size, (long long) id.mtime);
	}
	if (!claim_batch(&st.target, &batch_id, id.realpath))
	{
		medallion_reader_close(&st.reader);
		PG_RETURN_INT64(0);
	}

	state_init(&st, format, batch_id, id.realpath);
	landed = load_input(&st);
	medallion_reader_close(&st.reader);
	finish_ingest(&st, landed);
	PG_RETURN_INT64((int64) landed);
}
