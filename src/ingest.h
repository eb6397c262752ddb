/*-------------------------------------------------------------------------
 *
 * ingest.h
 *	  The input readers of ingestion, shared by ingest.c and ingest_reader.c
 *	  only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_INGEST_H
#define MEDALLION_INGEST_H

#include <sys/types.h>

#include "lib/stringinfo.h"

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

#endif							/* MEDALLION_INGEST_H */
