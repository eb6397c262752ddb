/*-------------------------------------------------------------------------
 *
 * ingest_reader.c
 *	  Input of ingestion: files and text cut into records with bounded memory.
 *
 * A reader hands out one record at a time.  Where a record ends is decided
 * by a small incremental scanner (a line, a CSV record, an element of a JSON
 * array, or the whole input), so that a file is read in chunks whatever its
 * format, and a record longer than medallion.max_record_size is never
 * buffered: its first MEDALLION_DLQ_HEAD bytes and its length are kept for
 * the dead-letter queue, and reading goes on after it.  Every chunk and
 * every slice scanned checks for interrupts, so a cancel is honoured during
 * a long read.
 *
 * Files are opened by their resolved path, without following a symbolic
 * link put there since, and without blocking (a FIFO would wait for a
 * writer); only regular files are read (a device like /dev/zero never ends),
 * and the opened descriptor must be the file that was checked.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "storage/fd.h"

#include "medallion.h"
#include "ingest.h"

/* Bytes read, or scanned, between two checks for interrupts. */
#define READ_CHUNK (1024 * 1024)

#define IS_JSON_SPACE(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

static void
reader_reset(Reader *r, size_t limit)
{
	memset(r, 0, sizeof(Reader));
	r->fd = -1;
	r->limit = limit;
	initStringInfo(&r->head);
}

/*
 * Reads text that is in memory already.
 */
void
medallion_reader_init_memory(Reader *r, char *data, size_t len, size_t limit)
{
	reader_reset(r, limit);
	r->buf = data;
	r->len = len;
	r->cap = len;
	r->eof = true;
}

/*
 * Refuses what is not a regular file.
 */
static void
require_regular_file(const char *path, const struct stat *sb)
{
	if (S_ISDIR(sb->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a directory", path)));
	if (!S_ISREG(sb->st_mode))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a regular file", path),
				 errdetail("Only regular files can be ingested: devices, FIFOs and sockets cannot.")));
}

/*
 * Opens a server file for reading and tells its identity: the resolved path
 * and the opened descriptor's device, inode, size and modification time.
 * The file is read up to the size seen here.
 */
void
medallion_reader_open_file(Reader *r, const char *path, size_t limit, FileIdentity *id)
{
	char	   *resolved;
	struct stat sb;
	struct stat fsb;

	if (!is_absolute_path(path))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("path \"%s\" is not absolute", path),
				 errdetail("medallion.ingest_file() takes absolute paths only.")));

	resolved = realpath(path, NULL);
	if (resolved == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	id->realpath = pstrdup(resolved);
	free(resolved);

	if (stat(id->realpath, &sb) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	require_regular_file(path, &sb);

	reader_reset(r, limit);
	r->path = pstrdup(path);
	r->fd = OpenTransientFile(id->realpath, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | PG_BINARY);
	if (r->fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" for reading: %m", path)));
	if (fstat(r->fd, &fsb) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	require_regular_file(path, &fsb);
	if (fsb.st_dev != sb.st_dev || fsb.st_ino != sb.st_ino || fsb.st_size != sb.st_size ||
		fsb.st_mtim.tv_sec != sb.st_mtim.tv_sec || fsb.st_mtim.tv_nsec != sb.st_mtim.tv_nsec)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("file \"%s\" changed while it was being opened", path),
				 errdetail("The opened file is not the one whose path was checked."),
				 errhint("Ingest the file once it is no longer being replaced or written.")));

	id->dev = fsb.st_dev;
	id->ino = fsb.st_ino;
	id->size = fsb.st_size;
	id->mtime = fsb.st_mtim.tv_sec;
	r->size = r->remaining = fsb.st_size;
	r->cap = READ_CHUNK;
	r->buf = palloc(r->cap);
}

/*
 * Closes the file, if any.
 */
void
medallion_reader_close(Reader *r)
{
	if (r->fd >= 0)
		CloseTransientFile(r->fd);
	r->fd = -1;
}

/*
 * Goes back to the start of the input, for another pass.
 */
void
medallion_reader_rewind(Reader *r)
{
	r->pos = 0;
	r->started = false;
	if (r->fd < 0)
		return;
	if (lseek(r->fd, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not seek to the start of file \"%s\": %m", r->path)));
	r->len = 0;
	r->eof = false;
	r->remaining = r->size;
}

/*
 * Reads the next chunk of the file, keeping the unread bytes.  The buffer
 * only ever holds one record of at most "limit" bytes and one chunk.
 * Returns false at the end of input.
 */
static bool
reader_fill(Reader *r)
{
	size_t		want;
	ssize_t		n;

	if (r->eof)
		return false;
	CHECK_FOR_INTERRUPTS();
	if (r->pos > 0)
	{
		memmove(r->buf, r->buf + r->pos, r->len - r->pos);
		r->len -= r->pos;
		r->pos = 0;
	}
	if (r->cap - r->len < READ_CHUNK)
	{
		r->cap = Max(r->cap * 2, r->len + READ_CHUNK);
		r->cap = Min(r->cap, r->limit + 2 * (size_t) READ_CHUNK);
		r->buf = repalloc_huge(r->buf, r->cap);
	}
	want = Min(r->cap - r->len, (size_t) READ_CHUNK);
	if ((off_t) want > r->remaining)
		want = (size_t) r->remaining;
	if (want == 0)
	{
		r->eof = true;
		return false;
	}
	do
	{
		n = read(r->fd, r->buf + r->len, want);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", r->path)));
	if (n == 0)
	{
		r->eof = true;
		return false;
	}
	r->len += n;
	r->remaining -= n;
	return true;
}

/*
 * Skips a UTF-8 byte-order mark at the start of the input.
 */
static void
reader_start(Reader *r)
{
	if (r->started)
		return;
	r->started = true;
	while (r->len - r->pos < 3 && reader_fill(r))
		;
	if (r->len - r->pos >= 3 && memcmp(r->buf + r->pos, "\xEF\xBB\xBF", 3) == 0)
		r->pos += 3;
}

/*
 * Cuts the next record, whose end "fn" finds.  Returns false at the end of
 * input.  The record stays valid until the next call.
 */
bool
medallion_reader_next(Reader *r, RecordEndFn fn, void *state, RawRecord *out)
{
	size_t		scanned = 0;	/* the record's bytes at buf[pos..pos+scanned) */
	int64		dropped = 0;	/* bytes of an over-long record let go */
	size_t		delim = 0;
	bool		done = false;

	reader_start(r);
	resetStringInfo(&r->head);
	for (;;)
	{
		size_t		avail = r->len - r->pos - scanned;
		size_t		used;

		if (avail == 0)
		{
			if (!reader_fill(r))
				break;
			continue;
		}
		CHECK_FOR_INTERRUPTS();
		avail = Min(avail, (size_t) READ_CHUNK);
		used = avail;
		done = fn(state, r->buf + r->pos + scanned, avail, &used, &delim);
		scanned += done ? used : avail;
		if ((int64) scanned + dropped > (int64) r->limit)
		{
			/* Too long: keep its head, let the rest go as it is scanned. */
			if (dropped == 0)
				appendBinaryStringInfo(&r->head, r->buf + r->pos,
									   Min(scanned, (size_t) MEDALLION_DLQ_HEAD));
			dropped += scanned;
			r->pos += scanned;
			scanned = 0;
		}
		if (done)
			break;
	}
	if (!done && scanned == 0 && dropped == 0)
		return false;

	out->oversized = (dropped > 0);
	out->at_eof = !done;
	out->total_len = dropped + scanned;
	if (out->oversized)
	{
		out->data = r->head.data;
		out->len = r->head.len;
	}
	else
	{
		out->data = r->buf + r->pos;
		out->len = (int) scanned;
	}
	r->pos += scanned + delim;
	return true;
}

/*
 * Consumes JSON whitespace.  Returns false at the end of input.
 */
bool
medallion_reader_skip_space(Reader *r)
{
	reader_start(r);
	for (;;)
	{
		while (r->pos < r->len && IS_JSON_SPACE(r->buf[r->pos]))
			r->pos++;
		if (r->pos < r->len)
			return true;
		if (!reader_fill(r))
			return false;
	}
}

/*
 * The next byte of input, or -1 at the end.
 */
int
medallion_reader_peek(Reader *r)
{
	reader_start(r);
	if (r->pos >= r->len && !reader_fill(r))
		return -1;
	return (unsigned char) r->buf[r->pos];
}

/*
 * Consumes bytes already peeked at.
 */
void
medallion_reader_consume(Reader *r, size_t n)
{
	Assert(r->pos + n <= r->len);
	r->pos += n;
}

/* ---------------------------------------------------------------------------
 * Where records end
 * ---------------------------------------------------------------------------
 */

/*
 * A line ends at a newline.
 */
bool
medallion_end_of_line(void *state, const char *p, size_t n, size_t *used, size_t *delim)
{
	const char *nl = memchr(p, '\n', n);

	if (nl == NULL)
		return false;
	*used = nl - p;
	*delim = 1;
	return true;
}

/*
 * A CSV record (RFC 4180) ends at a newline outside quotes.  Doubled quotes
 * inside a quoted field toggle twice, so counting is enough.
 */
bool
medallion_end_of_csv_record(void *state, const char *p, size_t n, size_t *used, size_t *delim)
{
	CsvEndState *s = state;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		if (p[i] == '"')
			s->in_quotes = !s->in_quotes;
		else if (p[i] == '\n')
		{
			s->newlines++;
			if (!s->in_quotes)
			{
				*used = i;
				*delim = 1;
				return true;
			}
		}
	}
	return false;
}

/*
 * An element of a JSON array ends at a comma or at the array's closing
 * bracket, outside strings and nested values.  Whether the element itself is
 * valid JSON is checked afterwards, on its own: only the brackets and strings
 * matter here.
 */
bool
medallion_end_of_json_element(void *state, const char *p, size_t n, size_t *used,
							  size_t *delim)
{
	JsonEndState *s = state;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		char		c = p[i];

		if (s->in_string)
		{
			if (s->escape)
				s->escape = false;
			else if (c == '\\')
				s->escape = true;
			else if (c == '"')
				s->in_string = false;
			continue;
		}
		switch (c)
		{
			case '"':
				s->in_string = true;
				break;
			case '[':
			case '{':
				s->depth++;
				break;
			case ']':
			case '}':
				if (s->depth > 0)
					s->depth--;
				else if (c == ']')
				{
					s->closed = true;
					*used = i;
					*delim = 1;
					return true;
				}
				break;
			case ',':
				if (s->depth == 0)
				{
					*used = i;
					*delim = 1;
					return true;
				}
				break;
			default:
				break;
		}
	}
	return false;
}

/*
 * The record is the rest of the input.
 */
bool
medallion_end_of_input(void *state, const char *p, size_t n, size_t *used, size_t *delim)
{
	return false;
}
