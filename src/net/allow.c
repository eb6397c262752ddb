/*-------------------------------------------------------------------------
 *
 * allow.c
 *	  The host allow-list of HTTP requests (medallion.http_allowed_hosts).
 *
 * The setting is a comma-separated list of entries: a host name
 * ("api.example.com"), a domain's hosts ("*.example.com"), any host by name
 * ("*"), or an address or network ("127.0.0.1", "10.1.0.0/16", "::1").
 * Empty allows nothing.  A URL's host must match an entry; the address it
 * resolves to must too: an address entry, or, for a host allowed by name, a
 * public address (a name in the list does not open loopback or private
 * networks, whatever the DNS answers).
 *
 * The address check runs inside a libcurl callback: it neither allocates
 * nor raises errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "nodes/pg_list.h"

#include "net/net.h"

typedef enum AllowKind
{
	ALLOW_NAME,					/* exactly this host */
	ALLOW_SUFFIX,				/* hosts ending with ".domain" (name holds ".domain") */
	ALLOW_ANY_NAME,				/* "*" */
	ALLOW_NET4,
	ALLOW_NET6
} AllowKind;

typedef struct AllowEntry
{
	AllowKind	kind;
	char	   *name;
	unsigned char addr[16];
	int			bits;
} AllowEntry;

struct HostAllowList
{
	int			n;
	AllowEntry *entries;
};

/*
 * Parses an address or network ("a.b.c.d[/n]", "v6[/n]") into e; false
 * when the text is not one.
 */
static bool
parse_network(const char *text, AllowEntry *e)
{
	char		buf[INET6_ADDRSTRLEN + 8];
	char	   *slash;
	int			max;

	if (strlen(text) >= sizeof(buf))
		return false;
	strcpy(buf, text);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	if (inet_pton(AF_INET, buf, e->addr) == 1)
	{
		e->kind = ALLOW_NET4;
		max = 32;
	}
	else if (inet_pton(AF_INET6, buf, e->addr) == 1)
	{
		e->kind = ALLOW_NET6;
		max = 128;
	}
	else
		return false;
	e->bits = max;
	if (slash)
	{
		char	   *end;
		long		bits = strtol(slash + 1, &end, 10);

		if (*end != '\0' || end == slash + 1 || bits < 0 || bits > max)
			return false;
		e->bits = (int) bits;
	}
	return true;
}

/*
 * The allow-list a setting's text describes.  Entries that are neither
 * names nor networks are skipped (the setting's check hook reports them).
 */
HostAllowList *
medallion_allow_parse(const char *setting)
{
	HostAllowList *list = palloc0(sizeof(HostAllowList));
	char	   *copy = pstrdup(setting ? setting : "");
	char	   *tok;
	char	   *save;
	int			cap = 4;

	list->entries = palloc0(sizeof(AllowEntry) * cap);
	for (tok = strtok_r(copy, ", \t\n", &save); tok; tok = strtok_r(NULL, ", \t\n", &save))
	{
		AllowEntry	e = {0};

		if (tok[0] == '[')
		{
			/* a bracketed IPv6 address, as in a URL */
			char	   *close = strchr(tok, ']');

			if (close)
				memmove(close, close + 1, strlen(close + 1) + 1);
			tok++;
		}
		if (strcmp(tok, "*") == 0)
			e.kind = ALLOW_ANY_NAME;
		else if (parse_network(tok, &e))
			 /* kind set */ ;
		else if (strncmp(tok, "*.", 2) == 0 && tok[2] != '\0')
		{
			e.kind = ALLOW_SUFFIX;
			e.name = pstrdup(tok + 1);
		}
		else
		{
			e.kind = ALLOW_NAME;
			e.name = pstrdup(tok);
		}
		if (e.name)
		{
			char	   *c;

			for (c = e.name; *c; c++)
				*c = pg_ascii_tolower((unsigned char) *c);
		}
		if (list->n == cap)
		{
			cap *= 2;
			list->entries = repalloc(list->entries, sizeof(AllowEntry) * cap);
		}
		list->entries[list->n++] = e;
	}
	return list;
}

/* Whether the first "bits" bits of a and b agree. */
static bool
prefix_matches(const unsigned char *a, const unsigned char *b, int bits)
{
	int			full = bits / 8;
	int			rest = bits % 8;

	if (memcmp(a, b, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ b[full]) & (0xFF << (8 - rest))) == 0;
}

/*
 * Whether a URL's host is allowed: by name, or, for an address literal, by
 * an address entry.
 */
bool
medallion_allow_host(const HostAllowList *list, const char *host)
{
	AllowEntry	literal = {0};
	char	   *lower;
	char	   *c;
	size_t		len;
	int			i;

	if (host == NULL || host[0] == '\0')
		return false;
	if (parse_network(host, &literal))
	{
		for (i = 0; i < list->n; i++)
		{
			const AllowEntry *e = &list->entries[i];

			if (e->kind == literal.kind && prefix_matches(e->addr, literal.addr, e->bits))
				return true;
		}
		return false;
	}
	lower = pstrdup(host);
	for (c = lower; *c; c++)
		*c = pg_ascii_tolower((unsigned char) *c);
	len = strlen(lower);
	/* "example.com." names the same host as "example.com" */
	if (len > 1 && lower[len - 1] == '.')
		lower[--len] = '\0';
	for (i = 0; i < list->n; i++)
	{
		const AllowEntry *e = &list->entries[i];

		if ((e->kind == ALLOW_ANY_NAME) ||
			(e->kind == ALLOW_NAME && strcmp(e->name, lower) == 0) ||
			(e->kind == ALLOW_SUFFIX && len > strlen(e->name) &&
			 strcmp(lower + len - strlen(e->name), e->name) == 0))
			return true;
	}
	return false;
}

/*
 * Whether an IPv4 address (4 bytes) is public: not this network, loopback,
 * private, shared (CGNAT), link-local, multicast or reserved.
 */
static bool
public_v4(const unsigned char *a)
{
	if (a[0] == 0 || a[0] == 10 || a[0] == 127 || a[0] >= 224)
		return false;
	if (a[0] == 169 && a[1] == 254)
		return false;
	if (a[0] == 172 && (a[1] & 0xF0) == 16)
		return false;
	if (a[0] == 192 && a[1] == 168)
		return false;
	if (a[0] == 100 && (a[1] & 0xC0) == 64)
		return false;
	return true;
}

/*
 * Whether a connection to a resolved address is allowed (see the file's
 * header).  by_name: the URL's host was allowed by a name entry.  Called
 * from a libcurl callback: no allocation, no error.
 */
bool
medallion_allow_address(const HostAllowList *list, bool by_name, const struct sockaddr *addr)
{
	unsigned char bytes[16];
	AllowKind	kind;
	int			i;

	if (addr->sa_family == AF_INET)
	{
		memcpy(bytes, &((const struct sockaddr_in *) addr)->sin_addr, 4);
		kind = ALLOW_NET4;
	}
	else if (addr->sa_family == AF_INET6)
	{
		memcpy(bytes, &((const struct sockaddr_in6 *) addr)->sin6_addr, 16);
		kind = ALLOW_NET6;
	}
	else
		return false;

	for (i = 0; i < list->n; i++)
	{
		const AllowEntry *e = &list->entries[i];

		if (e->kind == kind && prefix_matches(e->addr, bytes, e->bits))
			return true;
	}
	if (!by_name)
		return false;
	if (kind == ALLOW_NET4)
		return public_v4(bytes);
	/* IPv6: an IPv4-mapped address is judged as IPv4 */
	{
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
		static const unsigned char zero[16] = {0};

		if (memcmp(bytes, mapped, 12) == 0)
			return public_v4(bytes + 12);
		if (memcmp(bytes, zero, 15) == 0)	/* :: and ::1 */
			return false;
		if ((bytes[0] & 0xFE) == 0xFC ||	/* unique local */
			(bytes[0] == 0xFE && (bytes[1] & 0xC0) == 0x80) ||	/* link-local */
			bytes[0] == 0xFF)	/* multicast */
			return false;
	}
	return true;
}
