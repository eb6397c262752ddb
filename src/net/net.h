/*-------------------------------------------------------------------------
 *
 * net.h
 *	  Declarations private to the network room (src/net/): HTTP requests
 *	  (http.c, the only file that includes <curl/curl.h>), the host
 *	  allow-list (allow.c), HTTP sources (source*.c) and webhook alerts
 *	  (webhook.c, delivery.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef MEDALLION_NET_H
#define MEDALLION_NET_H

#include <sys/socket.h>

#include "medallion.h"

/* SQLSTATEs of refused requests (MD060-MD079); transient failures are class 08 */
#define MEDALLION_ERRCODE_HTTP_CLIENT_ERROR		MAKE_SQLSTATE('M','D','0','6','0')
#define MEDALLION_ERRCODE_HTTP_HOST_NOT_ALLOWED	MAKE_SQLSTATE('M','D','0','6','1')
#define MEDALLION_ERRCODE_HTTP_TLS_FAILURE		MAKE_SQLSTATE('M','D','0','6','2')
#define MEDALLION_ERRCODE_HTTP_REDIRECT_REFUSED	MAKE_SQLSTATE('M','D','0','6','3')
#define MEDALLION_ERRCODE_HTTP_TOO_LARGE		MAKE_SQLSTATE('M','D','0','6','4')
#define MEDALLION_ERRCODE_HTTP_PROTOCOL			MAKE_SQLSTATE('M','D','0','6','5')
#define MEDALLION_ERRCODE_HTTP_FAILURE			MAKE_SQLSTATE('M','D','0','6','6')

/* Redirects followed by one request, each hop checked like the first URL. */
#define MEDALLION_HTTP_MAX_REDIRECTS 5

/* One request. */
typedef struct HttpRequest
{
	const char *method;			/* "GET" or "POST" */
	const char *url;
	List	   *headers;		/* of char *: "Name: value" */
	const char *body;			/* POST: the body, or NULL */
	size_t		body_len;
	int			timeout_ms;		/* 0: medallion.http_timeout */
} HttpRequest;

/* Its response (palloc'd in the caller's context). */
typedef struct HttpResponse
{
	long		status;
	char	   *url;			/* the URL that answered (after redirects) */
	char	   *body;			/* NUL-terminated */
	size_t		body_len;
	char	   *link_next;		/* Link header's rel="next", resolved; or NULL */
	char	   *etag;
	char	   *last_modified;
	int			retry_after;	/* Retry-After in seconds; -1: none */
} HttpResponse;

/* http.c */
extern void medallion_http_request(const HttpRequest *req, HttpResponse *resp);
extern char *medallion_http_resolve(const char *base, const char *ref);
extern char *medallion_http_add_query(const char *url, const char *param, int64 value);
extern void medallion_http_check_url(const char *url, const char *what);
extern void medallion_http_require_success(const char *url, const HttpResponse *resp);

/* allow.c: medallion.http_allowed_hosts */
typedef struct HostAllowList HostAllowList;
extern HostAllowList *medallion_allow_parse(const char *setting);
extern bool medallion_allow_host(const HostAllowList *list, const char *host);
extern bool medallion_allow_address(const HostAllowList *list, bool by_name,
									const struct sockaddr *addr);

/* source.c: a source's definition */
typedef enum SourceNextKind
{
	NEXT_NONE,
	NEXT_BODY,					/* a link in the body, at next_path */
	NEXT_LINK,					/* the Link header's rel="next" */
	NEXT_PAGE,					/* next_param = 1, 2, 3... */
	NEXT_OFFSET					/* next_param = records received so far */
} SourceNextKind;

typedef struct SourceSpec
{
	char	   *url;
	char	   *target;			/* the bronze table's name */
	char	   *method;
	char	   *body;			/* POST: JSON text, or NULL */
	char	   *records;		/* "$" or "$.a.b", as given */
	List	   *records_path;	/* of char *: its keys */
	bool		ndjson;
	SourceNextKind next;
	List	   *next_path;
	char	   *next_param;
	int64		next_start;
	int			timeout_ms;		/* 0: medallion.http_timeout */
	int			max_pages;
} SourceSpec;

extern void medallion_source_parse(Jsonb *def, SourceSpec *spec);
extern List *medallion_source_path(const char *path, const char *option);
extern List *medallion_source_header_lines(Jsonb *headers);
extern Jsonb *medallion_net_check_headers(Jsonb *options);

/* alter.c: alter_pipeline() of sources and exports */
typedef void (*NetCheckDefinitionFn) (Jsonb *def);
extern Jsonb *medallion_net_alter(const char *pipeline, Jsonb *definition, Jsonb *options,
								  const char *const *own_options, NetCheckDefinitionFn check);

/* source_run.c: the Retry-After of this process's last refused request; digests */
extern void medallion_net_note_retry_after(int seconds);
extern char *medallion_net_digest(const char *prefix, const char *a, const char *b, size_t blen);

#endif							/* MEDALLION_NET_H */
