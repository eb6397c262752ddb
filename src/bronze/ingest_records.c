/*-------------------------------------------------------------------------
 *
 * ingest_records.c
 *	  Cutting the input of ingestion into records, and checking them.
 *
 * ndjson is cut at newlines, csv at newlines outside quotes (its first record
 * gives the keys), and a json document is either one object or an array
 * whose elements are cut as the reader streams by.  A record is landed only
 * when it is one JSON object; ingest.c sends the others to the DLQ.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "medallion.h"
#include "ingest.h"

static const char *const not_an_object = "record is not a JSON object";

/* ---------------------------------------------------------------------------
 * Checking records
 * ---------------------------------------------------------------------------
 */

/*
 * Checks that a record is one valid JSON object, without throwing.  Returns
 * NULL when it is, else the reason.  The parser's own wording quotes the
 * input, so a table that redacts gets a plain one instead.
 */
static const char *
check_json_object(IngestState *st, char *data, int len, const char **sqlstate)
{
	JsonLexContext *lex;
	JsonParseErrorType err;
	int			i = 0;
	bool		need_escapes;

	*sqlstate = "22032";		/* invalid_json_text */
	if (pg_verifymbstr(data, len, true) == false)
	{
		*sqlstate = "22021";	/* character_not_in_repertoire */
		return "invalid byte sequence for the database encoding";
	}
	if (medallion_jsonscan_object_keys(data, len, st->keys ? &st->scan : NULL))
	{
		/* the common case, settled in one pass */
		if (st->keys && st->scan.complete)
			medallion_payload_keys_add_scan(st->keys, &st->scan);
		else if (st->keys)
			medallion_payload_keys_add_text(st->keys, data, len);
		return NULL;
	}
	if (medallion_jsonscan_too_deep(data, len, MEDALLION_MAX_JSON_DEPTH))
	{
		*sqlstate = "54000";	/* program_limit_exceeded */
		return psprintf("record is nested more than %d levels deep", MEDALLION_MAX_JSON_DEPTH);
	}
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;

	/*
	 * De-escaping strings costs; only \u escapes can be refused by jsonb
	 * (\u0000, or non-ASCII code points in a non-UTF8 database).  A
	 * non-object is still told apart from malformed JSON.
	 */
	need_escapes = (i < len && data[i] == '{' && memchr(data, '\\', len) != NULL);
	lex = makeJsonLexContextCstringLen(data, len, GetDatabaseEncoding(), need_escapes);
	err = pg_parse_json(lex, &nullSemAction);
	if (err != JSON_SUCCESS)
		return st->redact ? "record is not valid JSON" : pstrdup(json_errdetail(err, lex));
	if (i == len || data[i] != '{')
		return not_an_object;
	if (st->keys)
		medallion_payload_keys_add_text(st->keys, data, len);
	return NULL;
}

/*
 * Why a record cannot land as it is, or NULL.
 */
const char *
medallion_ingest_check_record(IngestState *st, Record *rec, const char **sqlstate)
{
	const char *reason;

	if (rec->oversized || (st->format == FORMAT_CSV && (size_t) rec->len > st->limit))
	{
		*sqlstate = "54000";	/* program_limit_exceeded */
		return psprintf("record of %lld bytes exceeds medallion.max_record_size",
						(long long) (rec->oversized ? rec->total_len : rec->len));
	}
	if (st->format == FORMAT_CSV)
		return NULL;			/* built from fields: valid JSON */
	reason = check_json_object(st, rec->data, rec->len, sqlstate);
	if (reason == not_an_object && st->format == FORMAT_JSON)
		reason = (st->json_phase == JSON_END && rec->line == 1 && st->json_pos == 0) ?
			"document is neither a JSON object nor an array of objects" :
			"array element is not a JSON object";
	return reason;
}

/* ---------------------------------------------------------------------------
 * Cutting records: ndjson, json, csv
 * ---------------------------------------------------------------------------
 */

/*
 * Splits one CSV record (RFC 4180) into fields.  Unquoted empty fields are
 * NULL.  Returns NIL and sets *error when the quoting is broken.
 */
static List *
csv_fields(const char *s, int len, char **error)
{
	List	   *fields = NIL;
	StringInfoData f;
	int			i = 0;

	*error = NULL;
	for (;;)
	{
		bool		quoted = false;

		initStringInfo(&f);
		if (i < len && s[i] == '"')
		{
			quoted = true;
			i++;
			for (;;)
			{
				if (i >= len)
				{
					*error = gettext_noop("unterminated quoted field");
					return NIL;
				}
				if (s[i] == '"')
				{
					if (i + 1 < len && s[i + 1] == '"')
					{
						appendStringInfoChar(&f, '"');
						i += 2;
						continue;
					}
					i++;
					break;
				}
				appendStringInfoChar(&f, s[i++]);
			}
			if (i < len && s[i] != ',')
			{
				*error = gettext_noop("unexpected character after a quoted field");
				return NIL;
			}
		}
		else
		{
			while (i < len && s[i] != ',')
			{
				if (s[i] == '"')
				{
					*error = gettext_noop("quote inside an unquoted field");
					return NIL;
				}
				appendStringInfoChar(&f, s[i++]);
			}
		}
		fields = lappend(fields, (!quoted && f.len == 0) ? NULL : f.data);
		if (i >= len)
			break;
		i++;					/* the comma */
	}
	return fields;
}

static void
record_from_raw(Record *rec, RawRecord *raw)
{
	rec->data = rec->raw = raw->data;
	rec->len = rec->raw_len = raw->len;
	rec->total_len = raw->total_len;
	rec->oversized = raw->oversized;
}

/* Drops trailing JSON whitespace of a record that is whole. */
static void
trim_trailing_space(RawRecord *raw)
{
	if (raw->oversized)
		return;
	while (raw->len > 0 && (raw->data[raw->len - 1] == ' ' || raw->data[raw->len - 1] == '\t' ||
							raw->data[raw->len - 1] == '\n' || raw->data[raw->len - 1] == '\r'))
	{
		raw->len--;
		raw->total_len--;
	}
}

/*
 * The next element of a json document; false at its end, or when it turns
 * out not to be a document (then doc_broken says why).
 */
static bool
next_json_record(IngestState *st, Record *rec)
{
	Reader	   *r = &st->reader;
	RawRecord	raw;

	switch (st->json_phase)
	{
		case JSON_END:
			return false;
		case JSON_TAIL:
			st->json_phase = JSON_END;
			if (medallion_reader_skip_space(r))
				st->doc_broken = "text follows the JSON array";
			return false;
		case JSON_START:
			if (!medallion_reader_skip_space(r))
			{
				st->json_phase = JSON_END;
				return false;	/* empty input */
			}
			if (medallion_reader_peek(r) != '[')
			{
				/* One document: an object, or one bad record. */
				(void) medallion_reader_next(r, medallion_end_of_input, NULL, &raw);
				trim_trailing_space(&raw);
				st->json_phase = JSON_END;
				record_from_raw(rec, &raw);
				rec->line = 1;
				return true;
			}
			medallion_reader_consume(r, 1);
			st->json_phase = JSON_ARRAY;
			break;
		case JSON_ARRAY:
			break;
	}

	memset(&st->json_end, 0, sizeof(JsonEndState));
	if (!medallion_reader_skip_space(r) ||
		!medallion_reader_next(r, medallion_end_of_json_element, &st->json_end, &raw) ||
		raw.at_eof)
	{
		st->doc_broken = "the JSON array is not terminated";
		st->json_phase = JSON_END;
		return false;
	}
	trim_trailing_space(&raw);
	if (raw.total_len == 0)
	{
		st->json_phase = JSON_END;
		if (!st->json_end.closed || st->json_pos > 0)
			st->doc_broken = "the JSON array has an empty element";
		else if (medallion_reader_skip_space(r))
			st->doc_broken = "text follows the JSON array";
		return false;
	}
	if (st->json_end.closed)
		st->json_phase = JSON_TAIL;
	record_from_raw(rec, &raw);
	rec->line = ++st->json_pos;
	return true;
}

/*
 * The next CSV record, its CRLF line ends made LF; false at the end.
 */
static bool
next_csv_raw(IngestState *st, RawRecord *raw, int64 *first_line)
{
	for (;;)
	{
		int			i;

		*first_line = st->csv_end.newlines + 1;
		st->csv_end.in_quotes = false;
		if (!medallion_reader_next(&st->reader, medallion_end_of_csv_record, &st->csv_end, raw))
			return false;
		if (raw->oversized)
			return true;
		if (raw->at_eof && raw->len > 0 && raw->data[raw->len - 1] == '\n')
			raw->len--;			/* an unterminated quote ran to the end */
		if (raw->len > 0 && raw->data[raw->len - 1] == '\r')
			raw->len--;
		if (raw->len == 0)
			continue;			/* blank line between records */
		if (memchr(raw->data, '\r', raw->len) == NULL)
			return true;
		resetStringInfo(&st->unix_lines);
		for (i = 0; i < raw->len; i++)
			if (raw->data[i] != '\r' || i + 1 == raw->len || raw->data[i + 1] != '\n')
				appendStringInfoChar(&st->unix_lines, raw->data[i]);
		raw->data = st->unix_lines.data;
		raw->len = st->unix_lines.len;
		return true;
	}
}

/*
 * Reads the CSV header: its fields are the keys of every record.
 */
static bool
read_csv_header(IngestState *st)
{
	RawRecord	raw;
	int64		line;
	char	   *error;
	MemoryContext old;
	ListCell   *lc;

	if (!next_csv_raw(st, &raw, &line))
		return false;
	if (raw.oversized)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("CSV header of %lld bytes exceeds medallion.max_record_size",
						(long long) raw.total_len)));
	old = MemoryContextSwitchTo(st->cxt);
	st->header = csv_fields(raw.data, raw.len, &error);
	MemoryContextSwitchTo(old);
	if (error)
		ereport(ERROR,
				(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
				 errmsg("could not read the CSV header: %s", _(error))));
	foreach(lc, st->header)
	{
		ListCell   *other;

		if (lfirst(lc) == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
					 errmsg("CSV header has an empty column name")));
		for_each_cell(other, st->header, lnext(st->header, lc))
			if (lfirst(other) != NULL && strcmp(lfirst(lc), lfirst(other)) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
						 errmsg("CSV header has duplicate column name \"%s\"",
								(char *) lfirst(lc)),
						 errdetail("Each column name becomes a key of the record's JSON object.")));
	}
	return true;
}

/*
 * The next CSV record, as a JSON object of its fields; false at the end.
 */
static bool
next_csv_record(IngestState *st, Record *rec)
{
	RawRecord	raw;
	int64		line;
	const char *error = NULL;
	char	   *field_error;
	List	   *fields = NIL;
	ListCell   *h,
			   *v;

	if (st->header == NIL && !read_csv_header(st))
		return false;
	if (!next_csv_raw(st, &raw, &line))
		return false;
	record_from_raw(rec, &raw);
	rec->line = line;
	if (raw.oversized)
		return true;			/* check_record says why */

	fields = csv_fields(raw.data, raw.len, &field_error);
	error = field_error;
	if (error == NULL && list_length(fields) != list_length(st->header))
		error = psprintf("record has %d fields, the header has %d",
						 list_length(fields), list_length(st->header));
	if (error == NULL && !pg_verifymbstr(raw.data, raw.len, true))
		error = "invalid byte sequence for the database encoding";
	if (error)
	{
		rec->bad = true;
		rec->message = error;
		rec->sqlstate = "22P04";	/* bad_copy_file_format */
		return true;
	}

	resetStringInfo(&st->scratch);
	appendStringInfoChar(&st->scratch, '{');
	forboth(h, st->header, v, fields)
	{
		if (h != list_head(st->header))
			appendStringInfoChar(&st->scratch, ',');
		escape_json(&st->scratch, (char *) lfirst(h));
		appendStringInfoChar(&st->scratch, ':');
		if (lfirst(v) == NULL)
			appendStringInfoString(&st->scratch, "null");
		else
			escape_json(&st->scratch, (char *) lfirst(v));
	}
	appendStringInfoChar(&st->scratch, '}');
	rec->data = st->scratch.data;
	rec->len = st->scratch.len;
	return true;
}

/*
 * The next ndjson line that is not blank; false at the end.
 */
static bool
next_ndjson_record(IngestState *st, Record *rec)
{
	RawRecord	raw;

	for (;;)
	{
		int			i = 0;

		if (!medallion_reader_next(&st->reader, medallion_end_of_line, NULL, &raw))
			return false;
		st->lines++;
		if (raw.oversized)
			break;
		if (raw.len > 0 && raw.data[raw.len - 1] == '\r')
			raw.len--;
		while (i < raw.len && isspace((unsigned char) raw.data[i]))
			i++;
		if (i < raw.len)
			break;				/* blank lines are not records */
	}
	record_from_raw(rec, &raw);
	rec->line = st->lines;
	return true;
}

/*
 * Fills "rec" with the next record of the input; false at the end.
 */
bool
medallion_ingest_next_record(IngestState *st, Record *rec)
{
	bool		found = false;

	memset(rec, 0, sizeof(Record));
	switch (st->format)
	{
		case FORMAT_NDJSON:
			found = next_ndjson_record(st, rec);
			break;
		case FORMAT_JSON:
			found = next_json_record(st, rec);
			break;
		case FORMAT_CSV:
			found = next_csv_record(st, rec);
			break;
	}
	if (found)
		rec->ordinal = ++st->ordinal;
	return found;
}

/*
 * The whole input as one record, from its start: a json document that is
 * not one.
 */
bool
medallion_ingest_whole_input(IngestState *st, Record *rec)
{
	RawRecord	raw;

	medallion_ingest_rewind_records(st);
	memset(rec, 0, sizeof(Record));
	if (!medallion_reader_next(&st->reader, medallion_end_of_input, NULL, &raw))
		return false;
	record_from_raw(rec, &raw);
	rec->line = 1;
	return true;
}

/*
 * Goes back to the first record, for another pass.
 */
void
medallion_ingest_rewind_records(IngestState *st)
{
	medallion_reader_rewind(&st->reader);
	st->lines = 0;
	memset(&st->csv_end, 0, sizeof(CsvEndState));
	st->header = NIL;
	st->json_phase = JSON_START;
	st->json_pos = 0;
	st->doc_broken = NULL;
	st->ordinal = 0;
}
