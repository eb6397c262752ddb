/*-------------------------------------------------------------------------
 *
 * ingest.h
 *	  Private to ingestion: ingest.c (entry points), ingest_copy.c (feeding
 *	  COPY, the DLQ), ingest_records.c (records and their checks),
 *	  ingest_reader.c (input).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_INGEST_H
#define MEDALLION_INGEST_H

#include <sys/types.h>

#include "lib/stringinfo.h"
#include "nodes/pg_list.h"

#include "medallion.h"
#include "bronze/bronze.h"

/* Bytes of an over-long record kept for the DLQ. */
#define MEDALLION_DLQ_HEAD (64 * 1024)

/*
 * Text read from memory or from a file, cut into records with bounded
 * memory: a record longer than "limit" is not buffered; its first
 * MEDALLION_DLQ_HEAD bytes and its length are kept, the rest is skipped up to
 * the record's end.
 */
typedef struct Reader
{
	int			fd;				/* -1: the text is in memory */
	const char *path;			/* the file's name as given, for messages */
	char	   *buf;
	size_t		len;			/* bytes in buf */
	size_t		pos;			/* next unread byte */
	size_t		cap;
	bool		eof;
	bool		started;		/* a leading byte-order mark was looked for */
	off_t		size;			/* file: bytes to read, as fstat saw them */
	off_t		remaining;
	size_t		limit;			/* longest record kept whole */
	StringInfoData head;		/* an over-long record's first bytes */
} Reader;

/* One record as cut from the input. */
typedef struct RawRecord
{
	char	   *data;			/* the record, or its head when oversized */
	int			len;
	int64		total_len;		/* its length in the input */
	bool		oversized;
	bool		at_eof;			/* ended by the end of input, not a delimiter */
} RawRecord;

/*
 * Finds the end of a record in the next n bytes: true when it ends there,
 * after *used bytes, followed by *delim delimiter bytes; false when all n
 * bytes belong to it.  Called on consecutive slices of one record.
 */
typedef bool (*RecordEndFn) (void *state, const char *p, size_t n, size_t *used,
							 size_t *delim);

/* Where a file was opened: its identity. */
typedef struct FileIdentity
{
	char	   *realpath;
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	time_t		mtime;
} FileIdentity;

extern void medallion_reader_init_memory(Reader *r, char *data, size_t len, size_t limit);
extern void medallion_reader_open_file(Reader *r, const char *path, size_t limit,
									   FileIdentity *id);
extern void medallion_reader_close(Reader *r);
extern void medallion_reader_rewind(Reader *r);
extern bool medallion_reader_next(Reader *r, RecordEndFn fn, void *state, RawRecord *out);
extern bool medallion_reader_skip_space(Reader *r);
extern int	medallion_reader_peek(Reader *r);
extern void medallion_reader_consume(Reader *r, size_t n);

/* Record ends: a line, a CSV record, an element of a JSON array, the input. */
typedef struct CsvEndState
{
	bool		in_quotes;
	int64		newlines;		/* line ends passed, delimiters included */
} CsvEndState;

typedef struct JsonEndState
{
	int64		depth;
	bool		in_string;
	bool		escape;
	bool		closed;			/* the array's closing bracket ended it */
} JsonEndState;

extern bool medallion_end_of_line(void *state, const char *p, size_t n, size_t *used,
								  size_t *delim);
extern bool medallion_end_of_csv_record(void *state, const char *p, size_t n, size_t *used,
										size_t *delim);
extern bool medallion_end_of_json_element(void *state, const char *p, size_t n, size_t *used,
										  size_t *delim);
extern bool medallion_end_of_input(void *state, const char *p, size_t n, size_t *used,
								   size_t *delim);

/* ingest_records.c: the records of an ingest */
typedef enum IngestFormat
{
	FORMAT_NDJSON,
	FORMAT_JSON,
	FORMAT_CSV
} IngestFormat;

/* Where the json format's reader is in the document. */
typedef enum JsonPhase
{
	JSON_START,					/* nothing read yet */
	JSON_ARRAY,					/* inside the top-level array */
	JSON_TAIL,					/* after the array: only whitespace may follow */
	JSON_END
} JsonPhase;

/* One record cut from the input. */
typedef struct Record
{
	char	   *data;			/* JSON text to land (CSV: built from fields) */
	int			len;
	char	   *raw;			/* the input as it came (its head when oversized) */
	int			raw_len;
	int64		total_len;		/* the record's length in the input */
	bool		oversized;		/* longer than medallion.max_record_size */
	int64		line;			/* line (or array position) it starts at */
	int64		ordinal;		/* 1-based position among records */
	bool		bad;			/* already known bad: message says why */
	const char *message;
	const char *sqlstate;
} Record;

/* One ingest: ingest_records.c cuts its records, ingest.c lands them. */
typedef struct IngestState
{
	BronzeTarget target;
	IngestFormat format;
	const char *batch_id;
	const char *file_name;
	Reader		reader;
	size_t		limit;			/* medallion.max_record_size, in bytes */
	bool		redact;			/* the table redacts: keep no payload in the DLQ */

	int64		lines;			/* ndjson: lines read */
	CsvEndState csv_end;		/* csv: where a record ends, lines read */
	List	   *header;			/* csv: of char *, the keys */
	StringInfoData scratch;		/* csv: record text being built */
	StringInfoData unix_lines;	/* csv: a record with CRLF line ends made LF */
	JsonPhase	json_phase;		/* json */
	JsonEndState json_end;
	int64		json_pos;
	const char *doc_broken;		/* json: why the document is not one */

	/* records known bad before COPY (precise pass), sorted */
	int64	   *skip;
	int			nskip;
	int			skip_pos;

	int64		ordinal;
	MedallionDlqWriter *dlq;
	int64		nbad;			/* records sent to the DLQ */
	StringInfoData copybuf;		/* encoded rows not yet handed to COPY */
	int			copypos;
	bool		input_done;
	MemoryContext cxt;			/* lives as long as the ingest */
	MemoryContext record_cxt;	/* reset for every record */
	char	   *prefix;			/* encoded end of every row after _raw */
	int			prefix_len;
	PayloadKeys *keys;			/* the batch's payload keys, or NULL */
	JsonScanKeys scan;			/* the keys of the record being checked */
} IngestState;

extern bool medallion_ingest_next_record(IngestState *st, Record *rec);
extern const char *medallion_ingest_check_record(IngestState *st, Record *rec,
												 const char **sqlstate);
extern bool medallion_ingest_whole_input(IngestState *st, Record *rec);
extern void medallion_ingest_rewind_records(IngestState *st);

/* ingest_copy.c */
extern void medallion_ingest_keep_bad(IngestState *st, Record *rec, const char *message,
									  const char *sqlstate);
extern void medallion_ingest_copy_prefix(IngestState *st);
extern uint64 medallion_ingest_load(IngestState *st);

#endif							/* MEDALLION_INGEST_H */
