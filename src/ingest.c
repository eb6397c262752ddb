/*-------------------------------------------------------------------------
 *
 * ingest.c
 *	  Landing data in bronze tables: ingest(), ingest_text(), ingest_file().
 *
 * Text input (ndjson, a json array, csv) is cut into records, each record is
 * checked (jsonscan.c's one-pass scan, and the non-throwing JSON parser when
 * that scan has doubts), and the good ones are streamed into the bronze table
 * through COPY's own machinery (BeginCopyFrom with a data-source callback): no
 * per-row SPI, no subtransaction per row.  Bad records are kept aside and
 * written to medallion.dlq exactly as they came.  Records nested deeper than
 * MEDALLION_MAX_JSON_DEPTH are bad too: the recursive parsers would exhaust
 * the stack on them and fail the whole ingest.
 *
 * The pre-check is the JSON grammar; jsonb's input function is stricter in a
 * few corners (e.g. numbers out of numeric's range).  If COPY nevertheless
 * hits a data error, its subtransaction is rolled back and the input is
 * validated record by record with jsonb's own input function, in
 * subtransactions that write nothing, then loaded again without the culprits.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>

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
#include "storage/fd.h"
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

#if MEDALLION_COPY_CONSTANT_COLUMNS
#include "commands/copyfrom_internal.h"
#include "executor/executor.h"
#include "rewrite/rewriteHandler.h"
#include "utils/lsyscache.h"
#endif

/* COPY's quote and delimiter bytes: valid JSON text never contains them. */
#define COPY_QUOTE '\x01'
#define COPY_DELIM '\x02'

#define READ_CHUNK (1024 * 1024)

typedef enum IngestFormat
{
	FORMAT_NDJSON,
	FORMAT_JSON,
	FORMAT_CSV
} IngestFormat;

/* A record not landed, kept until the COPY is over. */
typedef struct BadRecord
{
	char	   *payload;
	int			len;
	char	   *message;
	const char *sqlstate;
	int64		line;
} BadRecord;

/* One record cut from the input. */
typedef struct Record
{
	char	   *data;			/* JSON text to land (CSV: built from fields) */
	int			len;
	char	   *raw;			/* the input exactly as it came */
	int			raw_len;
	int64		line;			/* line (or array position) it starts at */
	int64		ordinal;		/* 1-based position among records */
	bool		bad;			/* already known bad: message says why */
	char	   *message;
	const char *sqlstate;
} Record;

/* Where the text comes from: memory, or a file read in chunks. */
typedef struct Reader
{
	FILE	   *file;
	char	   *buf;
	size_t		len;			/* bytes in buf */
	size_t		pos;			/* next unread byte */
	size_t		cap;
	bool		eof;
	int64		line;			/* lines consumed so far */
} Reader;

typedef struct IngestState
{
	BronzeTarget target;
	IngestFormat format;
	const char *batch_id;
	const char *file_name;
	Reader		reader;

	/* json format: the whole document and its top-level elements */
	char	   *doc;
	int			doc_len;
	List	   *elements;		/* of Record * */
	ListCell   *next_element;

	/* csv format */
	List	   *header;			/* of char *, the keys */
	StringInfoData scratch;		/* record text being built */

	/* records known bad before COPY (precise pass), sorted */
	int64	   *skip;
	int			nskip;
	int			skip_pos;

	int64		ordinal;
	List	   *bad;			/* of BadRecord * */
	StringInfoData copybuf;		/* encoded rows not yet handed to COPY */
	int			copypos;
	bool		input_done;
	MemoryContext cxt;			/* lives as long as the ingest */
	MemoryContext record_cxt;	/* reset for every record */
	char	   *prefix;			/* encoded end of every row after _raw */
	int			prefix_len;
} IngestState;

/* The ingest in progress: COPY's data-source callback takes no argument. */
static IngestState *current_ingest = NULL;

PG_FUNCTION_INFO_V1(medallion_ingest);
PG_FUNCTION_INFO_V1(medallion_ingest_text);
PG_FUNCTION_INFO_V1(medallion_ingest_file);

/* ---------------------------------------------------------------------------
 * Reading lines
 * ---------------------------------------------------------------------------
 */

static void
reader_init_memory(Reader *r, char *data, size_t len)
{
	memset(r, 0, sizeof(Reader));
	r->buf = data;
	r->len = len;
	r->cap = len;
	r->eof = true;
}

static void
reader_init_file(Reader *r, FILE *f)
{
	memset(r, 0, sizeof(Reader));
	r->file = f;
	r->cap = READ_CHUNK;
	r->buf = palloc(r->cap);
}

/*
 * Reads more of the file, keeping the unread tail.  Returns false at end.
 */
static bool
reader_fill(Reader *r)
{
	size_t		n;

	if (r->eof)
		return false;
	if (r->pos > 0)
	{
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	if (r->len == r->cap)
	{
		if (r->cap >= MaxAllocHugeSize / 2)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("line too long to ingest")));
		r->cap *= 2;
		r->buf = repalloc_huge(r->buf, r->cap);
	}
	n = fread(r->buf + r->len, 1, r->cap - r->len, r->file);
	if (n == 0)
	{
		if (ferror(r->file))
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file: %m")));
		r->eof = true;
		return false;
	}
	r->len += n;
	return true;
}

/*
 * Returns the next line (without its newline and carriage return) or false
 * at the end of the input.  The line stays valid until the next call.
 */
static bool
reader_next_line(Reader *r, char **line, int *len)
{
	for (;;)
	{
		char	   *start = r->buf + r->pos;
		char	   *nl = memchr(start, '\n', r->len - r->pos);

		if (nl != NULL || (r->eof && r->pos < r->len))
		{
			size_t		n = nl ? (size_t) (nl - start) : r->len - r->pos;

			r->pos += n + (nl ? 1 : 0);
			if (n > 0 && start[n - 1] == '\r')
				n--;
			if (n > (size_t) MaxAllocSize - 1)
				ereport(ERROR,
						(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						 errmsg("line %lld is longer than 1 GB", (long long) r->line + 1)));
			*line = start;
			*len = (int) n;
			r->line++;
			return true;
		}
		if (!reader_fill(r))
		{
			if (r->pos < r->len)
				continue;
			return false;
		}
	}
}

/* ---------------------------------------------------------------------------
 * Cutting records: ndjson, json, csv
 * ---------------------------------------------------------------------------
 */

/*
 * Checks that a record is one valid JSON object, without throwing.  Returns
 * NULL when it is, else the reason.
 */
static char *
check_json_object(char *data, int len, const char **sqlstate)
{
	JsonLexContext *lex;
	JsonParseErrorType err;
	int			i = 0;
	bool		need_escapes;

	*sqlstate = "22032";		/* invalid_json_text */
	if (len > medallion_max_payload_mb * 1024 * 1024)
	{
		*sqlstate = "54000";	/* program_limit_exceeded */
		return psprintf("record of %d bytes exceeds medallion.max_record_size", len);
	}
	if (pg_verifymbstr(data, len, true) == false)
	{
		*sqlstate = "22021";	/* character_not_in_repertoire */
		return pstrdup("invalid byte sequence for the database encoding");
	}
	if (medallion_jsonscan_object(data, len))
		return NULL;			/* the common case, settled in one pass */
	if (medallion_jsonscan_too_deep(data, len, MEDALLION_MAX_JSON_DEPTH))
	{
		*sqlstate = "54000";	/* program_limit_exceeded */
		return psprintf("record is nested more than %d levels deep", MEDALLION_MAX_JSON_DEPTH);
	}
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;
	if (i == len || data[i] != '{')
	{
		/* Still tell malformed JSON from a well-formed non-object. */
		lex = makeJsonLexContextCstringLen(data, len, GetDatabaseEncoding(), false);
		err = pg_parse_json(lex, &nullSemAction);
		if (err != JSON_SUCCESS)
			return pstrdup(json_errdetail(err, lex));
		return pstrdup("record is not a JSON object");
	}

	/*
	 * De-escaping strings costs; only \u escapes can be refused by jsonb
	 * (\u0000, or non-ASCII code points in a non-UTF8 database).
	 */
	need_escapes = memchr(data, '\\', len) != NULL;
	lex = makeJsonLexContextCstringLen(data, len, GetDatabaseEncoding(), need_escapes);
	err = pg_parse_json(lex, &nullSemAction);
	if (err != JSON_SUCCESS)
		return pstrdup(json_errdetail(err, lex));
	return NULL;
}

/* Semantic actions that cut a JSON array into its elements. */
typedef struct ElementCutter
{
	JsonLexContext *lex;
	IngestState *st;
	char	   *start;
	bool		is_object;
	int64		count;
} ElementCutter;

static void
cut_element_start(void *state, bool isnull)
{
	ElementCutter *c = (ElementCutter *) state;

	if (c->lex->lex_level != 1)
		return;
	c->start = c->lex->token_start;
	c->is_object = (c->lex->token_type == JSON_TOKEN_OBJECT_START);
}

static void
cut_element_end(void *state, bool isnull)
{
	ElementCutter *c = (ElementCutter *) state;
	Record	   *rec;

	if (c->lex->lex_level != 1)
		return;
	rec = palloc0(sizeof(Record));
	rec->data = rec->raw = c->start;
	rec->len = rec->raw_len = (int) (c->lex->prev_token_terminator - c->start);
	rec->line = ++c->count;
	if (!c->is_object)
	{
		rec->bad = true;
		rec->message = "array element is not a JSON object";
		rec->sqlstate = "22032";
	}
	c->st->elements = lappend(c->st->elements, rec);
}

/*
 * Cuts a whole json document: an array of objects, or one object.  A
 * document that does not parse is one bad record.
 */
static void
cut_json_document(IngestState *st)
{
	JsonLexContext *lex;
	JsonSemAction sem = {0};
	ElementCutter cutter = {0};
	JsonParseErrorType err;
	const char *sqlstate;
	char	   *reason;
	int			i = 0;

	while (i < st->doc_len && isspace((unsigned char) st->doc[i]))
		i++;
	if (i == st->doc_len)
		return;					/* empty input: nothing to land */

	if (st->doc[i] == '[')
	{
		if (!pg_verifymbstr(st->doc, st->doc_len, true))
		{
			reason = pstrdup("invalid byte sequence for the database encoding");
			sqlstate = "22021";
		}
		else if (medallion_jsonscan_too_deep(st->doc, st->doc_len, MEDALLION_MAX_JSON_DEPTH + 1))
		{
			/* Cutting it would exhaust the stack: keep it whole. */
			reason = psprintf("array holds an element nested more than %d levels deep",
							  MEDALLION_MAX_JSON_DEPTH);
			sqlstate = "54000";
		}
		else
		{
			/*
			 * Cutting needs the structure only: de-escaping strings here
			 * would make one element's "\u0000" fail the whole document.
			 * Each element is checked on its own when it is loaded.
			 */
			lex = makeJsonLexContextCstringLen(st->doc, st->doc_len, GetDatabaseEncoding(),
											   false);
			cutter.lex = lex;
			cutter.st = st;
			sem.semstate = &cutter;
			sem.array_element_start = cut_element_start;
			sem.array_element_end = cut_element_end;
			err = pg_parse_json(lex, &sem);
			if (err == JSON_SUCCESS)
				return;
			reason = pstrdup(json_errdetail(err, lex));
			sqlstate = "22032";
		}
		list_free(st->elements);
		st->elements = NIL;
	}
	else
	{
		reason = check_json_object(st->doc, st->doc_len, &sqlstate);
		if (reason && strcmp(reason, "record is not a JSON object") == 0)
			reason = pstrdup("document is neither a JSON object nor an array of objects");
	}

	{
		Record	   *rec = palloc0(sizeof(Record));

		rec->data = rec->raw = st->doc;
		rec->len = rec->raw_len = st->doc_len;
		rec->line = 1;
		rec->bad = (reason != NULL);
		rec->message = reason;
		rec->sqlstate = sqlstate;
		st->elements = list_make1(rec);
	}
}

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
					*error = "unterminated quoted field";
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
				*error = "unexpected character after a quoted field";
				return NIL;
			}
		}
		else
		{
			while (i < len && s[i] != ',')
			{
				if (s[i] == '"')
				{
					*error = "quote inside an unquoted field";
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

/*
 * Reads one CSV record, joining lines while a quoted field is open.
 */
static bool
csv_next_raw(IngestState *st, StringInfo raw, int64 *first_line)
{
	char	   *line;
	int			len;
	int			quotes = 0;
	int			i;

	resetStringInfo(raw);
	do
	{
		if (!reader_next_line(&st->reader, &line, &len))
			return raw->len > 0 || quotes > 0;
		if (quotes == 0 && raw->len == 0)
		{
			*first_line = st->reader.line;
			if (len == 0)
				continue;		/* blank line between records */
		}
		else
			appendStringInfoChar(raw, '\n');
		appendBinaryStringInfo(raw, line, len);
		for (i = 0; i < len; i++)
			if (line[i] == '"')
				quotes++;
	} while (quotes % 2 != 0 || raw->len == 0);
	return true;
}

/*
 * Fills "rec" with the next record of the input; false at the end.
 */
static bool
next_record(IngestState *st, Record *rec)
{
	memset(rec, 0, sizeof(Record));

	switch (st->format)
	{
		case FORMAT_NDJSON:
			{
				char	   *line;
				int			len;

				for (;;)
				{
					int			i = 0;

					if (!reader_next_line(&st->reader, &line, &len))
						return false;
					while (i < len && isspace((unsigned char) line[i]))
						i++;
					if (i < len)
						break;	/* blank lines are not records */
				}
				rec->data = rec->raw = line;
				rec->len = rec->raw_len = len;
				rec->line = st->reader.line;
				break;
			}
		case FORMAT_JSON:
			{
				Record	   *e;

				if (st->next_element == NULL)
					return false;
				e = lfirst(st->next_element);
				st->next_element = lnext(st->elements, st->next_element);
				*rec = *e;
				break;
			}
		case FORMAT_CSV:
			{
				StringInfoData raw;
				int64		line = 0;
				char	   *error;
				List	   *fields;

				initStringInfo(&raw);
				while (st->header == NIL)
				{
					MemoryContext old;

					if (!csv_next_raw(st, &raw, &line))
						return false;
					old = MemoryContextSwitchTo(st->cxt);
					st->header = csv_fields(raw.data, raw.len, &error);
					MemoryContextSwitchTo(old);
					if (error)
						ereport(ERROR,
								(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
								 errmsg("could not read the CSV header: %s", error)));
					if (list_member_ptr(st->header, NULL))
						ereport(ERROR,
								(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
								 errmsg("CSV header has an empty column name")));
				}
				if (!csv_next_raw(st, &raw, &line))
					return false;
				rec->raw = raw.data;
				rec->raw_len = raw.len;
				rec->line = line;
				fields = csv_fields(raw.data, raw.len, &error);
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
				}
				else
				{
					ListCell   *h,
							   *v;

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
				}
				break;
			}
	}
	rec->ordinal = ++st->ordinal;
	return true;
}

/* ---------------------------------------------------------------------------
 * Feeding COPY
 * ---------------------------------------------------------------------------
 */

static void
keep_bad(IngestState *st, Record *rec, const char *message, const char *sqlstate)
{
	MemoryContext old = MemoryContextSwitchTo(st->cxt);
	BadRecord  *b = palloc(sizeof(BadRecord));

	if (!pg_verifymbstr(rec->raw, rec->raw_len, true))
	{
		/* Text cannot hold invalid bytes: keep them in bytea's escape form. */
		bytea	   *bytes = (bytea *) palloc(rec->raw_len + VARHDRSZ);

		SET_VARSIZE(bytes, rec->raw_len + VARHDRSZ);
		memcpy(VARDATA(bytes), rec->raw, rec->raw_len);
		b->payload = DatumGetCString(DirectFunctionCall1(byteaout, PointerGetDatum(bytes)));
		b->len = strlen(b->payload);
	}
	else
	{
		b->payload = pnstrdup(rec->raw, rec->raw_len);
		b->len = rec->raw_len;
	}
	b->message = pstrdup(message);
	b->sqlstate = pstrdup(sqlstate);
	b->line = rec->line;
	st->bad = lappend(st->bad, b);
	MemoryContextSwitchTo(old);
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
 * Pulls records until the COPY buffer has something to hand over.
 */
static void
produce_rows(IngestState *st, int wanted)
{
	Record		rec;
	MemoryContext old = MemoryContextSwitchTo(st->record_cxt);

	while (st->copybuf.len - st->copypos < wanted && !st->input_done)
	{
		const char *sqlstate = NULL;
		char	   *reason;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(st->record_cxt);
		if (!next_record(st, &rec))
		{
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
		if (st->format == FORMAT_NDJSON)
		{
			reason = check_json_object(rec.data, rec.len, &sqlstate);
			if (reason)
			{
				keep_bad(st, &rec, reason, sqlstate);
				continue;
			}
		}
		else if (rec.len > medallion_max_payload_mb * 1024 * 1024)
		{
			/* check_json_object applies the limit to ndjson lines */
			keep_bad(st, &rec,
					 psprintf("record of %d bytes exceeds medallion.max_record_size", rec.len),
					 "54000");
			continue;
		}
		if (st->copypos > 0 && st->copypos == st->copybuf.len)
		{
			resetStringInfo(&st->copybuf);
			st->copypos = 0;
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
	if (st->reader.file)
	{
		if (fseeko(st->reader.file, 0, SEEK_SET) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not rewind file: %m")));
		st->reader.len = st->reader.pos = 0;
		st->reader.eof = false;
	}
	else
		st->reader.pos = 0;
	st->reader.line = 0;
	st->next_element = list_head(st->elements);
	st->header = NIL;
	st->ordinal = 0;
	st->skip_pos = 0;
	st->bad = NIL;
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

	/* Each row carries the batch id and file name, unless COPY can add them. */
	if (!MEDALLION_COPY_CONSTANT_COLUMNS)
		cols = lappend(lappend(cols, makeString("_batch_id")), makeString("_file_name"));

	/* COPY's executor state needs the table in the range table, as DoCopy does. */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	current_ingest = st;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_source, cols, opts);
#if MEDALLION_COPY_CONSTANT_COLUMNS
	copy_set_constant(cstate, rel, "_batch_id", st->batch_id);
	copy_set_constant(cstate, rel, "_file_name", st->file_name);
#endif
	processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	current_ingest = NULL;
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
 * The precise pass: every record through jsonb's input function; returns the
 * sorted ordinals of the bad ones and keeps them as bad records.
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
		char	   *reason = NULL;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(st->record_cxt);
		if (!next_record(st, &rec))
			break;
		if (rec.bad)
			continue;			/* the load pass keeps it */
		if (st->format == FORMAT_NDJSON)
			reason = check_json_object(rec.data, rec.len, &sqlstate);
		if (reason)
			continue;			/* likewise */
		reason = jsonb_rejects(rec.data, rec.len, &sqlstate);
		if (reason == NULL)
			continue;
		keep_bad(st, &rec, reason, sqlstate);
		if (st->nskip == cap)
		{
			cap *= 2;
			st->skip = repalloc(st->skip, sizeof(int64) * cap);
		}
		st->skip[st->nskip++] = rec.ordinal;
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
 * Loads the whole input: a COPY in a subtransaction; on a data error, the
 * precise pass then a second COPY.  Returns the rows landed.
 */
static uint64
load_input(IngestState *st)
{
	CopyAttempt first = {st, 0};
	uint64		processed;
	List	   *precise_bad;
	bool		retry;

	rewind_input(st);
	retry = (medallion_try(attempt_copy, &first, false) != NULL);
	current_ingest = NULL;
	processed = first.processed;
	if (!retry)
		return processed;

	find_bad_records(st);
	precise_bad = st->bad;
	rewind_input(st);
	st->bad = NIL;
	processed = copy_into_bronze(st);
	st->bad = list_concat(st->bad, precise_bad);
	return processed;
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
 * Opens the target for ingestion by the current user: a medallion bronze
 * table the user may insert into, with today's partitions in place.
 */
static void
open_target(Oid relid, BronzeTarget *target)
{
	medallion_bronze_open(relid, target);
	if (pg_class_aclcheck(relid, GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", quote_qualified_identifier("bronze", target->relname)),
				 errhint("Ingesting needs the INSERT privilege on the bronze table.")));
	if (check_enable_rls(relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot ingest into table %s with row-level security enabled",
						quote_qualified_identifier("bronze", target->relname))));
	medallion_bronze_ensure_partitions(target);
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
	ereport(NOTICE,
			(errmsg("batch \"%s\" already landed in %s, nothing ingested",
					*batch_id, quote_qualified_identifier("bronze", target->relname))));
	return false;
}

/*
 * Writes the kept bad records to the DLQ and the batch's counts.
 */
static void
finish_ingest(IngestState *st, uint64 landed)
{
	ListCell   *lc;

	foreach(lc, st->bad)
	{
		BadRecord  *b = lfirst(lc);
		MedallionDlqEntry e = {0};

		e.pipeline = st->target.pipeline;
		e.payload = b->payload;
		e.payload_len = b->len;
		e.error_message = b->message;
		e.error_type = "parse";
		e.sqlstate = b->sqlstate;
		e.source_table = st->target.pipeline;
		e.batch_id = st->batch_id;
		e.file_name = st->file_name;
		e.line_number = b->line;
		medallion_dlq_add(&e);
	}
	medallion_catalog_finish_batch(st->target.pipeline, st->batch_id,
								   (int64) landed, list_length(st->bad));
	if (st->bad != NIL)
		ereport(NOTICE,
				(errmsg("%d record(s) could not be parsed and went to medallion.dlq",
						list_length(st->bad))));
}

static void
state_init(IngestState *st, IngestFormat format, const char *batch_id,
		   const char *file_name)
{
	StringInfoData p;

	st->cxt = CurrentMemoryContext;
	st->record_cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion ingest record",
										   ALLOCSET_DEFAULT_SIZES);
	st->format = format;
	st->batch_id = batch_id;
	st->file_name = file_name;
	initStringInfo(&st->copybuf);
	initStringInfo(&st->scratch);
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
 * object or an array of objects; other values go to the DLQ.
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

	open_target(PG_GETARG_OID(0), &st.target);
	if (!claim_batch(&st.target, &batch_id, file_name))
		PG_RETURN_INT64(0);
	st.cxt = CurrentMemoryContext;
	st.batch_id = batch_id;
	st.file_name = file_name;

	values[0] = JsonbPGetDatum(payload);
	values[1] = CStringGetTextDatum(batch_id);
	if (file_name)
		values[2] = CStringGetTextDatum(file_name);
	else
		nulls[2] = 'n';

	SPI_connect();
	if (JB_ROOT_IS_SCALAR(payload) || JB_ROOT_IS_OBJECT(payload))
	{
		if (JB_ROOT_IS_OBJECT(payload))
		{
			ret = SPI_execute_with_args(psprintf("INSERT INTO %s (_raw, _batch_id, _file_name) "
												 "VALUES ($1, $2, $3)",
												 quote_qualified_identifier("bronze", st.target.relname)),
										3, argtypes, values, nulls, false, 0);
			if (ret != SPI_OK_INSERT)
				elog(ERROR, "could not insert into bronze: SPI error %d", ret);
			landed = SPI_processed;
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

		ret = SPI_execute_with_args(psprintf("INSERT INTO %s (_raw, _batch_id, _file_name) "
											 "SELECT e, $2, $3 FROM pg_catalog.jsonb_array_elements($1) e "
											 "WHERE pg_catalog.jsonb_typeof(e) OPERATOR(pg_catalog.=) 'object'",
											 quote_qualified_identifier("bronze", st.target.relname)),
									3, argtypes, values, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "could not insert into bronze: SPI error %d", ret);
		landed = SPI_processed;

		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			Record		rec = {0};
			Jsonb	   *elem;

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
	SPI_finish();

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

	open_target(PG_GETARG_OID(0), &st.target);
	if (!claim_batch(&st.target, &batch_id, file_name))
		PG_RETURN_INT64(0);

	state_init(&st, format, batch_id, file_name);
	reader_init_memory(&st.reader, VARDATA_ANY(payload), VARSIZE_ANY_EXHDR(payload));
	if (format == FORMAT_JSON)
	{
		st.doc = VARDATA_ANY(payload);
		st.doc_len = VARSIZE_ANY_EXHDR(payload);
		cut_json_document(&st);
	}
	landed = load_input(&st);
	finish_ingest(&st, landed);
	PG_RETURN_INT64((int64) landed);
}

/*
 * medallion.ingest_file(target, path, format, batch_id): a server-side file.
 * Without a batch id the file's identity (path, size, modification time)
 * serves, so loading the same file again is a no-op.
 */
Datum
medallion_ingest_file(PG_FUNCTION_ARGS)
{
	IngestState st = {0};
	IngestFormat format;
	const char *batch_id;
	char	   *path;
	struct stat sb;
	FILE	   *f;
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

	open_target(PG_GETARG_OID(0), &st.target);

	if (stat(path, &sb) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	if (S_ISDIR(sb.st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a directory", path)));
	if (batch_id == NULL)
		batch_id = psprintf("file:%s:%lld:%lld", path, (long long) sb.st_size,
							(long long) sb.st_mtime);
	if (!claim_batch(&st.target, &batch_id, path))
		PG_RETURN_INT64(0);

	f = AllocateFile(path, PG_BINARY_R);
	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));

	state_init(&st, format, batch_id, path);
	if (format == FORMAT_JSON)
	{
		if (sb.st_size > (off_t) (MaxAllocSize - 1))
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("json file \"%s\" is larger than 1 GB", path),
					 errhint("Use the ndjson format for large files.")));
		st.doc = palloc(sb.st_size + 1);
		st.doc_len = fread(st.doc, 1, sb.st_size, f);
		if (ferror(f))
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		st.doc[st.doc_len] = '\0';
		reader_init_memory(&st.reader, st.doc, st.doc_len);
		cut_json_document(&st);
	}
	else
		reader_init_file(&st.reader, f);

	landed = load_input(&st);
	FreeFile(f);
	finish_ingest(&st, landed);
	PG_RETURN_INT64((int64) landed);
}
