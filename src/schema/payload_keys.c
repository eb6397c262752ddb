/*-------------------------------------------------------------------------
 *
 * payload_keys.c
 *	  The registry of payload keys: which keys, with which JSON types, the
 *	  rows of each bronze table carry (medallion.payload_keys).
 *
 * Keys are collected where rows are read anyway: the ingest scan of
 * ingest_text and ingest_file (jsonscan.c notes them as it walks the
 * bytes), the objects of ingest(), and a silver run's window for rows that
 * came without a batch (capture(), plain INSERT or COPY).  A batch's keys
 * are gathered in memory and written with one statement at its end: never
 * a round trip per row.  Most records of a feed share one shape (the same
 * keys in the same order), so a record whose shape was seen already costs
 * one hash of its key bytes.
 *
 * Paths are dotted, down to MEDALLION_PAYLOAD_KEY_DEPTH levels of objects
 * ("data.email" for a captured row); keys inside arrays are not followed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "medallion.h"

/* Longest path recorded (bytes); longer ones are left out. */
#define MAX_PATH_LEN 255

/* Shapes remembered per batch; past that every record's keys are added. */
#define MAX_SHAPES 4096

typedef struct KeyEntry
{
	char		key[MAX_PATH_LEN + 2];	/* type letter, then the path */
} KeyEntry;

typedef struct ShapeEntry
{
	uint64		hash;
} ShapeEntry;

struct PayloadKeys
{
	MemoryContext cxt;
	HTAB	   *keys;			/* of KeyEntry */
	HTAB	   *shapes;			/* of ShapeEntry */
	long		nshapes;
	JsonScanKeys scratch;		/* for jsonb and the exact parser */
	JsonScanKeys last;			/* the previous record's shape (keys copied) */
	StringInfoData last_bytes;	/* its key bytes */
};

/*
 * Whether the catalog has the registry (a library newer than a catalog not
 * yet updated has not).
 */
bool
medallion_payload_keys_enabled(void)
{
	Oid			nsp = get_namespace_oid("medallion", true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("payload_keys", nsp));
}

/*
 * An empty collection of keys, in the current memory context.
 */
PayloadKeys *
medallion_payload_keys_create(void)
{
	PayloadKeys *k = palloc0(sizeof(PayloadKeys));
	HASHCTL		ctl;

	k->cxt = AllocSetContextCreate(CurrentMemoryContext, "medallion payload keys",
								   ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(((KeyEntry *) NULL)->key);
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hcxt = k->cxt;
	k->keys = hash_create("medallion payload keys", 64, &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint64);
	ctl.entrysize = sizeof(ShapeEntry);
	ctl.hcxt = k->cxt;
	k->shapes = hash_create("medallion payload shapes", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	return k;
}

/*
 * Builds a ref's dotted path into buf (MAX_PATH_LEN + 2 bytes, the type
 * letter first); false when it is too long.
 */
static bool
ref_path(const JsonScanKeys *scan, int i, char *buf)
{
	const JsonKeyRef *ref = &scan->refs[i];
	int			n = 1;

	buf[0] = ref->type;
	if (ref->parent >= 0)
	{
		const JsonKeyRef *parent = &scan->refs[ref->parent];

		if (parent->len + 1 + ref->len > MAX_PATH_LEN)
			return false;
		memcpy(buf + n, parent->key, parent->len);
		n += parent->len;
		buf[n++] = '.';
	}
	else if (ref->len > MAX_PATH_LEN)
		return false;
	memcpy(buf + n, ref->key, ref->len);
	n += ref->len;
	buf[n] = '\0';
	/* a key with a NUL (escaped \u0000 is refused by jsonb) or bad bytes: left out */
	return (int) strlen(buf) == n;
}

/*
 * Whether a record has the previous record's shape: the common case of a
 * feed, told by comparing bytes, without hashing.
 */
static bool
same_as_last(PayloadKeys *k, const JsonScanKeys *scan)
{
	int			i;
	int			off = 0;

	if (scan->n != k->last.n)
		return false;
	for (i = 0; i < scan->n; i++)
	{
		const JsonKeyRef *a = &scan->refs[i];
		const JsonKeyRef *b = &k->last.refs[i];

		if (a->len != b->len || a->type != b->type || a->parent != b->parent ||
			memcmp(a->key, k->last_bytes.data + off, a->len) != 0)
			return false;
		off += a->len;
	}
	return true;
}

/* Remembers a record's shape as the previous one. */
static void
remember_last(PayloadKeys *k, const JsonScanKeys *scan)
{
	MemoryContext old = MemoryContextSwitchTo(k->cxt);
	int			i;

	if (k->last_bytes.data == NULL)
		initStringInfo(&k->last_bytes);
	resetStringInfo(&k->last_bytes);
	if (k->last.cap < scan->n)
	{
		k->last.cap = Max(scan->n, 32);
		k->last.refs = k->last.refs ? repalloc(k->last.refs, sizeof(JsonKeyRef) * k->last.cap) :
			palloc(sizeof(JsonKeyRef) * k->last.cap);
	}
	for (i = 0; i < scan->n; i++)
	{
		k->last.refs[i] = scan->refs[i];
		appendBinaryStringInfo(&k->last_bytes, scan->refs[i].key, scan->refs[i].len);
	}
	k->last.n = scan->n;
	MemoryContextSwitchTo(old);
}

/*
 * Adds the keys of one record.  A shape (its keys, their nesting and
 * types, in order) met before adds nothing new.
 */
void
medallion_payload_keys_add_scan(PayloadKeys *k, const JsonScanKeys *scan)
{
	uint64		h = UINT64CONST(0xcbf29ce484222325);
	int			i;
	bool		found;
	char		buf[MAX_PATH_LEN + 2];

	if (same_as_last(k, scan))
		return;
	remember_last(k, scan);

	for (i = 0; i < scan->n; i++)
	{
		const JsonKeyRef *ref = &scan->refs[i];

		h = hash_combine64(h, hash_bytes_extended((const unsigned char *) ref->key, ref->len,
												  (uint64) ((ref->parent + 1) * 8 + ref->type)));
	}
	if (k->nshapes < MAX_SHAPES)
	{
		(void) hash_search(k->shapes, &h, HASH_ENTER, &found);
		if (found)
			return;
		k->nshapes++;
	}
	for (i = 0; i < scan->n; i++)
	{
		if (!ref_path(scan, i, buf))
			continue;
		(void) hash_search(k->keys, buf, HASH_ENTER, &found);
	}
}

/*
 * Adds one key of a flat record (a CSV field).
 */
void
medallion_payload_keys_add_flat(PayloadKeys *k, const char *key, char type)
{
	char		buf[MAX_PATH_LEN + 2];
	bool		found;

	if (strlen(key) > MAX_PATH_LEN)
		return;
	buf[0] = type;
	strcpy(buf + 1, key);
	(void) hash_search(k->keys, buf, HASH_ENTER, &found);
}

static void
scratch_add(JsonScanKeys *s, const char *key, int len, int parent, char type)
{
	if (s->n == s->cap)
	{
		s->cap = Max(s->cap * 2, 32);
		s->refs = s->refs ? repalloc(s->refs, sizeof(JsonKeyRef) * s->cap) :
			palloc(sizeof(JsonKeyRef) * s->cap);
	}
	s->refs[s->n].key = key;
	s->refs[s->n].len = len;
	s->refs[s->n].parent = parent;
	s->refs[s->n].type = type;
	s->n++;
}

/*
 * Notes the keys of a jsonb object straight from its container (keys are
 * the first half of its entries, values the second), without iterators or
 * copies: ingest() and a run's window call this for every row.
 */
static void
container_keys(JsonScanKeys *s, JsonbContainer *jc, int parent, int depth)
{
	int			count = JsonContainerSize(jc);
	char	   *base = (char *) &jc->children[count * 2];
	int			i;

	for (i = 0; i < count; i++)
	{
		uint32		koff = getJsonbOffset(jc, i);
		uint32		klen = getJsonbLength(jc, i);
		JEntry		ve = jc->children[i + count];
		JsonbContainer *sub = NULL;
		char		type;

		if (JBE_ISSTRING(ve))
			type = 's';
		else if (JBE_ISNUMERIC(ve))
			type = 'n';
		else if (JBE_ISBOOL_TRUE(ve) || JBE_ISBOOL_FALSE(ve))
			type = 'b';
		else if (JBE_ISNULL(ve))
			type = 'z';
		else
		{
			sub = (JsonbContainer *) (base + INTALIGN(getJsonbOffset(jc, i + count)));
			type = JsonContainerIsObject(sub) ? 'o' : 'a';
		}
		scratch_add(s, base + koff, klen, parent, type);
		if (type == 'o' && depth < MEDALLION_PAYLOAD_KEY_DEPTH)
			container_keys(s, sub, s->n - 1, depth + 1);
	}
}

/*
 * Adds the keys of a jsonb object (ingest()'s objects, a run's window).
 */
void
medallion_payload_keys_add_jsonb(PayloadKeys *k, JsonbContainer *object)
{
	MemoryContext old = MemoryContextSwitchTo(k->cxt);

	k->scratch.n = 0;
	container_keys(&k->scratch, object, -1, 1);
	MemoryContextSwitchTo(old);
	medallion_payload_keys_add_scan(k, &k->scratch);
}

/* The exact parser's walk: pg_parse_json with semantic actions. */
typedef struct TextWalk
{
	JsonScanKeys *s;
	int			level;			/* containers open */
	bool		in_object[MEDALLION_PAYLOAD_KEY_DEPTH + 1];
	int			top;			/* ref of the open level-1 key's object, or -1 */
	bool		pending;		/* a key waits for its value's type */
	char	   *key;
	int			parent;
} TextWalk;

static void
walk_value(TextWalk *w, char type)
{
	if (!w->pending)
		return;
	w->pending = false;
	scratch_add(w->s, w->key, strlen(w->key), w->parent, type);
	if (w->level == 1)
		w->top = (type == 'o') ? w->s->n - 1 : -1;
}

static void
walk_object_start(void *state)
{
	TextWalk   *w = state;

	walk_value(w, 'o');
	if (w->level <= MEDALLION_PAYLOAD_KEY_DEPTH)
		w->in_object[w->level] = true;
	w->level++;
}

static void
walk_array_start(void *state)
{
	TextWalk   *w = state;

	walk_value(w, 'a');
	if (w->level <= MEDALLION_PAYLOAD_KEY_DEPTH)
		w->in_object[w->level] = false;
	w->level++;
}

static void
walk_end(void *state)
{
	((TextWalk *) state)->level--;
}

static void
walk_field_start(void *state, char *fname, bool isnull)
{
	TextWalk   *w = state;

	w->pending = false;
	if (fname == NULL)
		return;
	if (w->level == 1)
	{
		w->pending = true;
		w->key = fname;
		w->parent = -1;
	}
	else if (w->level == 2 && w->in_object[1] && w->top >= 0)
	{
		w->pending = true;
		w->key = fname;
		w->parent = w->top;
	}
}

static void
walk_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TextWalk   *w = state;

	walk_value(w, tokentype == JSON_TOKEN_STRING ? 's' :
			   tokentype == JSON_TOKEN_NUMBER ? 'n' :
			   tokentype == JSON_TOKEN_NULL ? 'z' : 'b');
}

/*
 * Adds the keys of a JSON object given as text that the fast scan left to
 * the exact parser (escaped keys, unusual text).  Text that does not parse
 * adds nothing.
 */
void
medallion_payload_keys_add_text(PayloadKeys *k, char *data, int len)
{
	MemoryContext old = MemoryContextSwitchTo(k->cxt);
	MemoryContext walk_cxt = AllocSetContextCreate(k->cxt, "medallion key walk",
												   ALLOCSET_DEFAULT_SIZES);
	JsonLexContext *lex;
	JsonSemAction sem = {0};
	TextWalk	w = {0};

	MemoryContextSwitchTo(walk_cxt);
	k->scratch.n = 0;
	w.s = &k->scratch;
	w.top = -1;
	sem.semstate = &w;
	sem.object_start = walk_object_start;
	sem.object_end = walk_end;
	sem.array_start = walk_array_start;
	sem.array_end = walk_end;
	sem.object_field_start = walk_field_start;
	sem.scalar = walk_scalar;
	lex = makeJsonLexContextCstringLen(data, len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &sem) == JSON_SUCCESS)
		medallion_payload_keys_add_scan(k, &k->scratch);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(walk_cxt);
	k->scratch.refs = NULL;		/* was in walk_cxt */
	k->scratch.cap = 0;
	k->scratch.n = 0;
}

/*
 * Writes a batch's keys into medallion.payload_keys for a bronze pipeline:
 * keys it does not hold yet are inserted; the last_seen of known ones moves
 * when it is more than a minute old (so a stream of small batches does not
 * rewrite the same rows), skipping rows another transaction is updating (it
 * writes about the same time), and not at all in REPEATABLE READ or
 * SERIALIZABLE.  Concurrent ingests never wait on each other here: the
 * table has no unique key (two batches meeting a new key at once may each
 * add a row).  As the catalog owner.
 */
void
medallion_payload_keys_flush(PayloadKeys *k, const char *pipeline)
{
	long		n;
	Datum	   *paths;
	Datum	   *types;
	HASH_SEQ_STATUS seq;
	KeyEntry   *e;
	long		i = 0;
	Oid			argtypes[3] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[3];
	MedallionGateway gw;

	if (k == NULL || (n = hash_get_num_entries(k->keys)) == 0)
		return;
	paths = palloc(sizeof(Datum) * n);
	types = palloc(sizeof(Datum) * n);
	hash_seq_init(&seq, k->keys);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		const char *type;

		switch (e->key[0])
		{
			case 'o':
				type = "object";
				break;
			case 'a':
				type = "array";
				break;
			case 's':
				type = "string";
				break;
			case 'n':
				type = "number";
				break;
			case 'b':
				type = "boolean";
				break;
			default:
				type = "null";
				break;
		}
		paths[i] = CStringGetTextDatum(e->key + 1);
		types[i] = CStringGetTextDatum(type);
		i++;
	}
	values[0] = CStringGetTextDatum(pipeline);
	values[1] = PointerGetDatum(construct_array(paths, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(types, n, TEXTOID, -1, false, TYPALIGN_INT));

	medallion_catalog_enter(&gw);
	(void) medallion_gateway_exec(
		"INSERT INTO medallion.payload_keys AS k (pipeline, path, json_type) "
		"SELECT $1, u.path, u.json_type "
		"FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(path, json_type) "
		"WHERE NOT EXISTS (SELECT FROM medallion.payload_keys x "
		"  WHERE x.pipeline OPERATOR(pg_catalog.=) $1 AND x.path OPERATOR(pg_catalog.=) u.path "
		"  AND x.json_type OPERATOR(pg_catalog.=) u.json_type) "
		"ORDER BY 2, 3",
		3, argtypes, values, NULL, 0, SPI_OK_INSERT);
	/* in REPEATABLE READ a row moved by a later commit would fail the ingest */
	if (!IsolationUsesXactSnapshot())
		(void) medallion_gateway_exec(
		"UPDATE medallion.payload_keys k SET last_seen = pg_catalog.now() "
		"FROM (SELECT x.ctid AS row_id FROM medallion.payload_keys x "
		"      JOIN ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(path, json_type) "
		"        ON x.path OPERATOR(pg_catalog.=) u.path "
		"       AND x.json_type OPERATOR(pg_catalog.=) u.json_type "
		"      WHERE x.pipeline OPERATOR(pg_catalog.=) $1 "
		"        AND x.last_seen OPERATOR(pg_catalog.<) "
		"            (pg_catalog.now() OPERATOR(pg_catalog.-) '1 minute'::pg_catalog.interval) "
		"      ORDER BY x.path, x.json_type "
		"      FOR UPDATE OF x SKIP LOCKED) s "
		"WHERE k.ctid OPERATOR(pg_catalog.=) s.row_id",
		3, argtypes, values, NULL, 0, SPI_OK_UPDATE);
	medallion_gateway_leave(&gw);
	MemoryContextDelete(k->cxt);
	memset(k, 0, sizeof(*k));
}
