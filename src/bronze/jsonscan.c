/*-------------------------------------------------------------------------
 *
 * jsonscan.c
 *	  A fast, non-recursive look at JSON text, for ingest.c.
 *
 * Checking records with pg_parse_json() costs a token stream and a function
 * call per token, and its recursion gives out on deeply nested text (stack
 * depth limit exceeded).  The two scans here walk the bytes once, with no
 * allocation and no recursion:
 *
 * - medallion_jsonscan_object() answers only "surely one valid object" or
 *   "check again": anything unusual (errors, \u0000, surrogates, high \u
 *   escapes outside UTF8, deep nesting) is left to the exact check, which
 *   decides and words the message.  It must never say yes to text that
 *   pg_parse_json() refuses; saying "check again" too often only costs speed.
 *
 * - medallion_jsonscan_too_deep() tells whether text nests arrays and objects
 *   deeper than a limit, so that pg_parse_json() is never given text that
 *   would exhaust the stack.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "miscadmin.h"

#include "medallion.h"

/* Deeper objects are left to the exact check (which has no such limit). */
#define FAST_MAX_DEPTH 256

/* Bytes scanned between two checks for interrupts: a record may be 1 GB. */
#define SCAN_CHUNK (1024 * 1024)

#define IS_JSON_SPACE(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')

/* Bytes that end a run of plain string bytes: '"', '\\', control characters. */
static const bool string_stop[256] = {
	[0x00] = true, [0x01] = true, [0x02] = true, [0x03] = true, [0x04] = true,
	[0x05] = true, [0x06] = true, [0x07] = true, [0x08] = true, [0x09] = true,
	[0x0a] = true, [0x0b] = true, [0x0c] = true, [0x0d] = true, [0x0e] = true,
	[0x0f] = true, [0x10] = true, [0x11] = true, [0x12] = true, [0x13] = true,
	[0x14] = true, [0x15] = true, [0x16] = true, [0x17] = true, [0x18] = true,
	[0x19] = true, [0x1a] = true, [0x1b] = true, [0x1c] = true, [0x1d] = true,
	[0x1e] = true, [0x1f] = true, ['"'] = true, ['\\'] = true
};

/* Bytes that may follow a number or a literal (true, false, null). */
static const bool after_scalar[256] = {
	[' '] = true, ['\t'] = true, ['\n'] = true, ['\r'] = true,
	[','] = true, [']'] = true, ['}'] = true
};

/*
 * The value of a hex digit, or -1.
 */
static inline int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Skips the string whose opening quote is at *pp.  False when the exact check
 * must decide: end of input, a control character, or an escape that
 * de-escaping might refuse.
 */
static inline bool
skip_string(const unsigned char **pp, const unsigned char *end, bool utf8)
{
	const unsigned char *p = *pp + 1;

	for (;;)
	{
		while (p < end && !string_stop[*p])
			p++;
		if (p >= end || *p < 0x20)
			return false;
		if (*p == '"')
			break;
		/* a backslash */
		if (end - p < 2)
			return false;
		switch (p[1])
		{
			case '"':
			case '\\':
			case '/':
			case 'b':
			case 'f':
			case 'n':
			case 'r':
			case 't':
				p += 2;
				break;
			case 'u':
				{
					int			cp = 0;
					int			i;

					if (end - p < 6)
						return false;
					for (i = 2; i < 6; i++)
					{
						int			h = hex_value(p[i]);

						if (h < 0)
							return false;
						cp = (cp << 4) | h;
					}

					/*
					 * \u0000 and surrogates (paired or not) have rules of
					 * their own; outside UTF8 only ASCII escapes convert.
					 */
					if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF) || (cp > 0x7F && !utf8))
						return false;
					p += 6;
					break;
				}
			default:
				return false;
		}
	}
	*pp = p + 1;
	return true;
}

/*
 * Skips the number starting at *pp (JSON's grammar exactly).  False when it
 * is not one.
 */
static inline bool
skip_number(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char *p = *pp;

	if (*p == '-')
		p++;
	if (p >= end)
		return false;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
	{
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	else
		return false;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || !(*p >= '0' && *p <= '9'))
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || !(*p >= '0' && *p <= '9'))
			return false;
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	*pp = p;
	return true;
}

/*
 * True only when "data" is one JSON object, alone but for whitespace, that
 * pg_parse_json() accepts with de-escaping in the database encoding.  False
 * means "check again", not "invalid".  The encoding is not verified here.
 */
bool
medallion_jsonscan_object(const char *data, int len)
{
	return medallion_jsonscan_object_keys(data, len, NULL);
}

/*
 * Notes a key the scan met, with the type its value starts with (p points
 * at the value's first byte).  Keys of the top-level object and of objects
 * directly under it, as the payload-keys registry wants them.
 */
static inline void
note_key(JsonScanKeys *keys, const unsigned char *start, const unsigned char *stop,
		 int depth, const unsigned char *stack, int *top, unsigned char first)
{
	JsonKeyRef *ref;

	if (depth > MEDALLION_PAYLOAD_KEY_DEPTH || (depth == 2 && (stack[1] != '{' || *top < 0)))
		return;
	if (memchr(start, '\\', stop - start) != NULL)
	{
		keys->complete = false;	/* escaped: the exact parser de-escapes it */
		return;
	}
	if (keys->n == keys->cap)
	{
		keys->cap = Max(keys->cap * 2, 32);
		keys->refs = keys->refs ? repalloc(keys->refs, sizeof(JsonKeyRef) * keys->cap) :
			palloc(sizeof(JsonKeyRef) * keys->cap);
	}
	ref = &keys->refs[keys->n];
	ref->key = (const char *) start;
	ref->len = stop - start;
	ref->parent = (depth == 1) ? -1 : *top;
	switch (first)
	{
		case '{':
			ref->type = 'o';
			break;
		case '[':
			ref->type = 'a';
			break;
		case '"':
			ref->type = 's';
			break;
		case 't':
		case 'f':
			ref->type = 'b';
			break;
		case 'n':
			ref->type = 'z';
			break;
		default:
			ref->type = 'n';
			break;
	}
	if (depth == 1)
		*top = (ref->type == 'o') ? keys->n : -1;
	keys->n++;
}

/*
 * medallion_jsonscan_object(), noting the keys it meets in *keys (may be
 * NULL).  The notes are worth something only when it returns true.
 */
bool
medallion_jsonscan_object_keys(const char *data, int len, JsonScanKeys *keys)
{
	const unsigned char *p = (const unsigned char *) data;
	const unsigned char *end = p + len;
	unsigned char stack[FAST_MAX_DEPTH];	/* '{' or '[' of each open level */
	int			depth = 0;
	bool		utf8 = (GetDatabaseEncoding() == PG_UTF8);
	const unsigned char *next_check = p + SCAN_CHUNK;
	int			top = -1;		/* the key whose object value is open at depth 2 */

	if (keys)
	{
		keys->n = 0;
		keys->complete = true;
	}
	while (p < end && IS_JSON_SPACE(*p))
		p++;
	if (p >= end || *p != '{')
		return false;

	/*
	 * A state machine over three states: a value is expected, a value just
	 * ended, a key is expected.
	 */
value:
	if (p >= next_check)
	{
		CHECK_FOR_INTERRUPTS();
		next_check = p + SCAN_CHUNK;
	}
	while (p < end && IS_JSON_SPACE(*p))
		p++;
	if (p >= end)
		return false;
	switch (*p)
	{
		case '{':
		case '[':
			if (depth == FAST_MAX_DEPTH)
				return false;
			stack[depth++] = *p++;
			while (p < end && IS_JSON_SPACE(*p))
				p++;
			if (p >= end)
				return false;
			if (*p == (stack[depth - 1] == '{' ? '}' : ']'))
			{
				p++;
				depth--;
				goto value_end;
			}
			if (stack[depth - 1] == '{')
				goto key;
			goto value;
		case '"':
			if (!skip_string(&p, end, utf8))
				return false;
			goto value_end;
		case 't':
			if (end - p < 4 || memcmp(p, "true", 4) != 0)
				return false;
			p += 4;
			break;
		case 'f':
			if (end - p < 5 || memcmp(p, "false", 5) != 0)
				return false;
			p += 5;
			break;
		case 'n':
			if (end - p < 4 || memcmp(p, "null", 4) != 0)
				return false;
			p += 4;
			break;
		default:
			if (!skip_number(&p, end))
				return false;
			break;
	}
	/* a number or literal: the lexer would glue letters and digits to it */
	if (p < end && !after_scalar[*p])
		return false;

value_end:
	while (p < end && IS_JSON_SPACE(*p))
		p++;
	if (depth == 0)
		return p == end;
	if (p >= end)
		return false;
	if (*p == ',')
	{
		p++;
		if (stack[depth - 1] == '{')
			goto key;
		goto value;
	}
	if (*p == (stack[depth - 1] == '{' ? '}' : ']'))
	{
		p++;
		depth--;
		goto value_end;
	}
	return false;

key:
	while (p < end && IS_JSON_SPACE(*p))
		p++;
	{
		const unsigned char *key_start = p + 1;

		if (p >= end || *p != '"' || !skip_string(&p, end, utf8))
			return false;
		if (keys && depth <= MEDALLION_PAYLOAD_KEY_DEPTH)
		{
			const unsigned char *key_stop = p - 1;

			while (p < end && IS_JSON_SPACE(*p))
				p++;
			if (p >= end || *p != ':')
				return false;
			p++;
			while (p < end && IS_JSON_SPACE(*p))
				p++;
			if (p >= end)
				return false;
			note_key(keys, key_start, key_stop, depth, stack, &top, *p);
			goto value;
		}
	}
	while (p < end && IS_JSON_SPACE(*p))
		p++;
	if (p >= end || *p != ':')
		return false;
	p++;
	goto value;
}

/*
 * True when "data" opens more than "limit" arrays and objects inside one
 * another.  Brackets inside strings do not count.  Whatever the text's
 * errors, pg_parse_json() never nests deeper than this counts: it reads the
 * same brackets and strings, and stops at the first error.
 */
bool
medallion_jsonscan_too_deep(const char *data, int len, int limit)
{
	int			depth = 0;
	int			i = 0;
	int			next_check = SCAN_CHUNK;

	while (i < len)
	{
		if (i >= next_check)
		{
			CHECK_FOR_INTERRUPTS();
			next_check = i + SCAN_CHUNK;
		}
		switch (data[i++])
		{
			case '{':
			case '[':
				if (++depth > limit)
					return true;
				break;
			case '}':
			case ']':
				depth--;
				break;
			case '"':
				while (i < len && data[i] != '"')
					i += (data[i] == '\\') ? 2 : 1;
				i++;			/* the closing quote */
				break;
			default:
				break;
		}
	}
	return false;
}
