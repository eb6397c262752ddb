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
 * (ingest_copy.c): no per-row SPI, no subtransaction per row.  Bad records are written to medallion.dlq in
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
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
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

static const char *const format_names[] = {"ndjson", "json", "csv"};

PG_FUNCTION_INFO_V1(medallion_ingest);
PG_FUNCTION_INFO_V1(medallion_ingest_text);
PG_FUNCTION_INFO_V1(medallion_ingest_file);

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
bool
medallion_bronze_redacts(Oid relid)
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
	st->redact = medallion_bronze_redacts(relid);
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
	if (st->keys && st->format == FORMAT_CSV && landed > 0)
	{
		ListCell   *lc;

		/* CSV fields are strings (or absent) */
		foreach(lc, st->header)
			medallion_payload_keys_add_flat(st->keys, lfirst(lc), 's');
	}
	if (st->keys && landed > 0)
		medallion_payload_keys_flush(st->keys, st->target.pipeline);
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
	medallion_ingest_copy_prefix(st);
	if (medallion_payload_keys_enabled())
	{
		st->keys = medallion_payload_keys_create();
		/* in the ingest's context: records are checked in a shorter one */
		st->scan.cap = 32;
		st->scan.refs = palloc(sizeof(JsonKeyRef) * st->scan.cap);
	}
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
	if (medallion_payload_keys_enabled())
		st.keys = medallion_payload_keys_create();

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
			if (st.keys)
				medallion_payload_keys_add_jsonb(st.keys, &payload->root);
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
			medallion_ingest_keep_bad(&st, &rec, "payload is neither a JSON object nor an array of objects", "22032");
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
			{
				if (st.keys)
					medallion_payload_keys_add_jsonb(st.keys, v.val.binary.data);
				continue;
			}
			elem = JsonbValueToJsonb(&v);
			rec.raw = JsonbToCString(NULL, &elem->root, VARSIZE(elem));
			rec.raw_len = strlen(rec.raw);
			rec.line = pos;
			medallion_ingest_keep_bad(&st, &rec, "array element is not a JSON object", "22032");
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
	landed = medallion_ingest_load(&st);
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
	landed = medallion_ingest_load(&st);
	medallion_reader_close(&st.reader);
	finish_ingest(&st, landed);
	PG_RETURN_INT64((int64) landed);
}

