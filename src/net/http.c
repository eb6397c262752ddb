/*-------------------------------------------------------------------------
 *
 * http.c
 *	  HTTP requests with libcurl: the only file of medallion that includes
 *	  <curl/curl.h>.
 *
 * libcurl runs inside a server process, so:
 * - CURLOPT_NOSIGNAL: PostgreSQL's own timeouts use SIGALRM;
 * - no callback raises an error or allocates with palloc (an error would
 *   longjmp through libcurl's frames): callbacks set flags, and the errors
 *   are raised once curl_easy_perform() has returned; libcurl's own
 *   allocations stay with malloc;
 * - a pending cancel or termination stops the transfer from the progress
 *   callback, and is then served by CHECK_FOR_INTERRUPTS();
 * - handles and buffers are freed on every path (PG_FINALLY).
 * Each request, and each redirect hop (followed here, not by libcurl, so
 * each is checked before it is made), must be http or https to a host that
 * medallion.http_allowed_hosts allows, and the address a host resolves to is
 * checked again when the socket is opened (allow.c).  TLS peers and host
 * names are verified; proxies from the environment are not used (the
 * address checked is the one connected to).  The body is capped while it
 * streams, after decompression.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "miscadmin.h"
#include "utils/builtins.h"

#include "net/net.h"

/* Response headers of interest are short; a longer one is ignored. */
#define MAX_HEADER_VALUE 8192

/* One transfer's state, shared with libcurl's callbacks. */
typedef struct Transfer
{
	CURL	   *handle;
	struct curl_slist *headers;
	const HostAllowList *allow;
	bool		by_name;		/* the host was allowed by name */
	bool		address_refused;
	char		refused_address[INET6_ADDRSTRLEN];
	bool		interrupted;
	bool		too_large;
	bool		no_memory;
	size_t		max;
	char	   *body;			/* malloc'd */
	size_t		len;
	size_t		cap;
	char		errbuf[CURL_ERROR_SIZE];
} Transfer;

static bool curl_ready = false;

/*
 * Body bytes as they arrive (decoded): kept up to the size limit.
 */
static size_t
write_body(char *data, size_t size, size_t nmemb, void *arg)
{
	Transfer   *t = arg;
	size_t		n = size * nmemb;

	if (n > t->max - t->len)
	{
		t->too_large = true;
		return 0;				/* aborts the transfer */
	}
	if (t->len + n + 1 > t->cap)
	{
		size_t		cap = Max(t->cap * 2, t->len + n + 1);
		char	   *grown;

		cap = Max(cap, 16384);
		grown = realloc(t->body, cap);
		if (grown == NULL)
		{
			t->no_memory = true;
			return 0;
		}
		t->body = grown;
		t->cap = cap;
	}
	memcpy(t->body + t->len, data, n);
	t->len += n;
	return n;
}

/*
 * Progress callback: stops the transfer when a cancel or a termination is
 * pending.  Only a flag: the interrupt is served after curl_easy_perform().
 */
static int
check_interrupts(void *arg, curl_off_t dltotal, curl_off_t dlnow,
				 curl_off_t ultotal, curl_off_t ulnow)
{
	Transfer   *t = arg;

	if (QueryCancelPending || ProcDiePending)
	{
		t->interrupted = true;
		return 1;
	}
	return 0;
}

/*
 * Opens the socket of a connection, if the address it goes to is allowed.
 */
static curl_socket_t
open_socket(void *arg, curlsocktype purpose, struct curl_sockaddr *address)
{
	Transfer   *t = arg;

	if (!medallion_allow_address(t->allow, t->by_name, &address->addr))
	{
		t->address_refused = true;
		if (address->family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *) &address->addr)->sin_addr,
					  t->refused_address, sizeof(t->refused_address));
		else if (address->family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *) &address->addr)->sin6_addr,
					  t->refused_address, sizeof(t->refused_address));
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

static void
ensure_curl(void)
{
	if (curl_ready)
		return;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not initialize libcurl")));
	curl_ready = true;
}

/*
 * A URL's scheme and host (palloc'd), or false when it is not a URL.
 */
static bool
url_parts(const char *url, char **scheme, char **host)
{
	CURLU	   *u = curl_url();
	char	   *s = NULL;
	char	   *h = NULL;
	bool		ok;

	if (u == NULL)
		return false;
	ok = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
		curl_url_get(u, CURLUPART_SCHEME, &s, 0) == CURLUE_OK;
	/* file:///x has no host: its scheme is what refuses it */
	if (ok && curl_url_get(u, CURLUPART_HOST, &h, 0) != CURLUE_OK)
		h = NULL;
	curl_url_cleanup(u);
	/* copied only now: a palloc failure leaks nothing of libcurl's but s, h */
	PG_TRY();
	{
		*scheme = ok ? pstrdup(s) : NULL;
		*host = ok ? pstrdup(h ? h : "") : NULL;
		if (ok && (*host)[0] == '[')
		{
			/* an IPv6 literal, bracketed */
			(*host)++;
			(*host)[strcspn(*host, "]")] = '\0';
		}
	}
	PG_FINALLY();
	{
		curl_free(s);
		curl_free(h);
	}
	PG_END_TRY();
	return ok;
}

/*
 * Checks a URL a request would go to: http or https, to a host the
 * allow-list names; "what" says which URL in messages ("URL", "redirect
 * target").  Returns whether the host was allowed by name (not an address).
 */
static bool
check_url(const char *url, const char *what, const HostAllowList *allow)
{
	char	   *scheme;
	char	   *host;
	struct in6_addr probe;

	if (!url_parts(url, &scheme, &host))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", what, url)));
	if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_HTTP_PROTOCOL),
				 errmsg("%s \"%s\" uses scheme \"%s\"", what, url, scheme),
				 errdetail("Only http and https URLs are fetched.")));
	if (!medallion_allow_host(allow, host))
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_HTTP_HOST_NOT_ALLOWED),
				 errmsg("host \"%s\" of %s \"%s\" is not allowed", host, what, url),
				 errdetail("medallion.http_allowed_hosts does not list it."),
				 errhint("A superuser can add it to medallion.http_allowed_hosts.")));
	return inet_pton(AF_INET, host, &probe) != 1 && inet_pton(AF_INET6, host, &probe) != 1;
}

/*
 * Whether a URL carries a user name or password (http://user:pw@host/).
 */
static bool
url_has_credentials(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *user = NULL;
	char	   *password = NULL;
	bool		has;

	if (u == NULL)
		return false;
	has = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
		(curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
		 curl_url_get(u, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK);
	curl_free(user);
	curl_free(password);
	curl_url_cleanup(u);
	return has;
}

/*
 * Checks a URL as a request to it would (scheme and allow-list).  A URL
 * medallion keeps is no place for credentials: a source's or an export's is
 * in medallion.pipelines.definition, which everyone reads.
 */
void
medallion_http_check_url(const char *url, const char *what)
{
	(void) check_url(url, what, medallion_allow_parse(medallion_http_allowed_hosts));
	if (url_has_credentials(url))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not carry a user name or password", what),
				 errdetail("The URL is kept where every role can read it."),
				 errhint("Send credentials in a header (option \"headers\", e.g. {\"Authorization\": \"Basic ...\"}), which only the owner reads.")));
}

/*
 * A response header's value (palloc'd), or NULL.  nth: which occurrence.
 */
static char *
header_value(CURL *h, const char *name, size_t nth)
{
	struct curl_header *hh;

	if (curl_easy_header(h, name, nth, CURLH_HEADER, -1, &hh) != CURLHE_OK ||
		strlen(hh->value) > MAX_HEADER_VALUE)
		return NULL;
	return pstrdup(hh->value);
}

/*
 * The rel="next" target of a Link header value, as written, or NULL.
 */
static char *
link_next(const char *value)
{
	const char *p = value;

	while ((p = strchr(p, '<')) != NULL)
	{
		const char *close = strchr(p, '>');
		const char *params;
		const char *end;
		char	   *rel;

		if (close == NULL)
			return NULL;
		params = close + 1;
		end = strchr(params, '<');
		rel = pnstrdup(params, end ? (size_t) (end - params) : strlen(params));
		/* rel="next", rel=next, or a list of relations holding next */
		if (strstr(rel, "rel=next") || strstr(rel, "rel=\"next\"") ||
			(strstr(rel, "rel=\"") && strstr(rel, " next")))
			return pnstrdup(p + 1, close - p - 1);
		p = close;
	}
	return NULL;
}

/*
 * Seconds a Retry-After value asks to wait (delta-seconds or an HTTP
 * date); -1 when it says nothing usable.
 */
static int
retry_after_seconds(const char *value)
{
	char	   *end;
	long		secs;
	time_t		when;

	if (value == NULL)
		return -1;
	secs = strtol(value, &end, 10);
	if (end != value && *end == '\0' && secs >= 0)
		return (int) Min(secs, 86400);
	when = curl_getdate(value, NULL);
	if (when < 0)
		return -1;
	return (int) Max(Min(when - time(NULL), 86400), 0);
}

/*
 * Raises the error of a transfer that did not complete.
 */
static void
transfer_failed(Transfer *t, CURLcode rc, const char *url, int timeout_ms)
{
	const char *why = t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc);

	if (t->address_refused)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_HTTP_HOST_NOT_ALLOWED),
				 errmsg("address %s of \"%s\" is not allowed", t->refused_address, url),
				 errdetail("medallion.http_allowed_hosts lists neither the address nor, for a public address, the host."),
				 errhint("A superuser can add the address or its network to medallion.http_allowed_hosts.")));
	if (t->too_large || rc == CURLE_FILESIZE_EXCEEDED)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_HTTP_TOO_LARGE),
				 errmsg("response of \"%s\" exceeds medallion.http_max_response_size (%zu bytes)",
						url, t->max),
				 errhint("A superuser can raise medallion.http_max_response_size.")));
	if (t->no_memory)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while receiving \"%s\"", url)));
	switch (rc)
	{
		case CURLE_OPERATION_TIMEDOUT:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("request to \"%s\" timed out after %d ms", url, timeout_ms),
					 errdetail("%s", why)));
			break;
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_CONNECT:
			ereport(ERROR,
					(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
					 errmsg("could not connect to \"%s\"", url),
					 errdetail("%s", why)));
			break;
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_GOT_NOTHING:
		case CURLE_PARTIAL_FILE:
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("connection to \"%s\" failed during the transfer", url),
					 errdetail("%s", why)));
			break;
		case CURLE_SSL_CONNECT_ERROR:
		case CURLE_PEER_FAILED_VERIFICATION:
		case CURLE_SSL_CERTPROBLEM:
		case CURLE_SSL_CIPHER:
		case CURLE_SSL_CACERT_BADFILE:
		case CURLE_SSL_ISSUER_ERROR:
		case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		case CURLE_SSL_INVALIDCERTSTATUS:
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_HTTP_TLS_FAILURE),
					 errmsg("TLS failure with \"%s\"", url),
					 errdetail("%s", why)));
			break;
		case CURLE_UNSUPPORTED_PROTOCOL:
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_HTTP_PROTOCOL),
					 errmsg("protocol of \"%s\" is not allowed", url),
					 errdetail("%s", why)));
			break;
		default:
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_HTTP_FAILURE),
					 errmsg("request to \"%s\" failed", url),
					 errdetail("%s", why)));
	}
}

/*
 * Sets up a transfer's handle for one hop.
 */
static void
setup_handle(Transfer *t, const HttpRequest *req, const char *url, const char *method,
			 bool with_body, int timeout_ms)
{
	CURL	   *h = curl_easy_init();
	ListCell   *lc;

	if (h == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not create a libcurl handle")));
	t->handle = h;
	foreach(lc, req->headers)
	{
		struct curl_slist *l = curl_slist_append(t->headers, lfirst(lc));

		if (l == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		t->headers = l;
	}
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_PROXY, "");
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long) timeout_ms);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
	curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) t->max);
	curl_easy_setopt(h, CURLOPT_USERAGENT, "medallion/" MEDALLION_CATALOG_VERSION);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, check_interrupts);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, t);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(h, CURLOPT_OPENSOCKETDATA, t);
	if (strcmp(method, "POST") == 0)
	{
		curl_easy_setopt(h, CURLOPT_POST, 1L);
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
						 (curl_off_t) (with_body ? req->body_len : 0));
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, with_body && req->body ? req->body : "");
	}
}

/* Frees what a hop's transfer holds (libcurl's memory). */
static void
transfer_reset(Transfer *t)
{
	if (t->handle)
		curl_easy_cleanup(t->handle);
	t->handle = NULL;
	if (t->headers)
		curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->body);
	t->body = NULL;
	t->len = t->cap = 0;
}

/*
 * One hop: performs it and fills resp; returns the redirect target
 * (absolute, palloc'd) when the answer is a redirect, else NULL.
 */
static char *
perform_hop(Transfer *t, const HttpRequest *req, const char *url, const char *method,
			bool with_body, int timeout_ms, HttpResponse *resp)
{
	CURLcode	rc;
	char	   *location = NULL;
	char	   *link;
	size_t		i;

	t->by_name = check_url(url, resp->url ? "redirect target" : "URL", t->allow);
	setup_handle(t, req, url, method, with_body, timeout_ms);
	rc = curl_easy_perform(t->handle);
	if (t->interrupted)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling the request to \"%s\"", url)));
	}
	if (rc != CURLE_OK)
		transfer_failed(t, rc, url, timeout_ms);

	curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &resp->status);
	resp->url = pstrdup(url);
	if (resp->status >= 300 && resp->status < 400 && resp->status != 304)
	{
		char	   *target = NULL;

		curl_easy_getinfo(t->handle, CURLINFO_REDIRECT_URL, &target);
		if (target)
			location = pstrdup(target);
	}
	resp->body = palloc(t->len + 1);
	if (t->len > 0)
		memcpy(resp->body, t->body, t->len);
	resp->body[t->len] = '\0';
	resp->body_len = t->len;
	resp->etag = header_value(t->handle, "ETag", 0);
	resp->last_modified = header_value(t->handle, "Last-Modified", 0);
	{
		char	   *ra = header_value(t->handle, "Retry-After", 0);

		resp->retry_after = retry_after_seconds(ra);
	}
	resp->link_next = NULL;
	for (i = 0; resp->link_next == NULL && (link = header_value(t->handle, "Link", i)) != NULL; i++)
	{
		char	   *next = link_next(link);

		if (next)
			resp->link_next = medallion_http_resolve(url, next);
	}
	transfer_reset(t);
	return location;
}

/*
 * Checks a redirect's target: a refused hop is a refused redirect,
 * whatever refused it.
 */
static void
check_redirect(const char *from, const char *target, const HostAllowList *allow)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) check_url(target, "redirect target", allow);
	}
	PG_CATCH();
	{
		ErrorData  *e;

		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_HTTP_REDIRECT_REFUSED),
				 errmsg("redirect from \"%s\" refused: %s", from, e->message),
				 e->detail ? errdetail("%s", e->detail) : 0));
	}
	PG_END_TRY();
}

/*
 * The hops of a request, each checked before it is made.
 */
static void
follow_redirects(Transfer *t, const HttpRequest *req, int timeout_ms, HttpResponse *resp)
{
	const char *url = req->url;
	const char *method = req->method ? req->method : "GET";
	bool		with_body = true;
	int			hops;

	for (hops = 0;; hops++)
	{
		char	   *target = perform_hop(t, req, url, method, with_body, timeout_ms, resp);

		if (target == NULL)
			return;
		if (hops == MEDALLION_HTTP_MAX_REDIRECTS)
			ereport(ERROR,
					(errcode(MEDALLION_ERRCODE_HTTP_REDIRECT_REFUSED),
					 errmsg("too many redirects from \"%s\"", req->url),
					 errdetail("At most %d redirects are followed.", MEDALLION_HTTP_MAX_REDIRECTS)));
		/* 303, and 301/302 after a POST, continue as GET (as browsers do) */
		if (resp->status == 303 ||
			((resp->status == 301 || resp->status == 302) && strcmp(method, "POST") == 0))
		{
			method = "GET";
			with_body = false;
		}
		check_redirect(url, target, t->allow);
		url = target;
	}
}

/*
 * Performs a request (GET or POST), following at most
 * MEDALLION_HTTP_MAX_REDIRECTS redirects, each checked.  Raises an error
 * when no HTTP answer was had (class 08 when a retry may succeed: a timeout,
 * a failed connection); any HTTP status is returned in resp.
 */
void
medallion_http_request(const HttpRequest *req, HttpResponse *resp)
{
	Transfer   *t = palloc0(sizeof(Transfer));
	int			timeout_ms = req->timeout_ms > 0 ? Min(req->timeout_ms, medallion_http_timeout) :
		medallion_http_timeout;

	ensure_curl();
	memset(resp, 0, sizeof(*resp));
	t->allow = medallion_allow_parse(medallion_http_allowed_hosts);
	t->max = (size_t) medallion_http_max_response_kb * 1024;

	PG_TRY();
	{
		follow_redirects(t, req, timeout_ms, resp);
	}
	PG_FINALLY();
	{
		transfer_reset(t);
	}
	PG_END_TRY();
}

/*
 * Raises the error of an HTTP status that is not a success (2xx): class 08
 * for 408, 429 and 5xx (noting Retry-After), MD060 for other 4xx.
 */
void
medallion_http_require_success(const char *url, const HttpResponse *resp)
{
	long		s = resp->status;

	if (s >= 200 && s < 300)
		return;

	if (s == 408 || s == 429 || s >= 500)
	{
		medallion_net_note_retry_after(resp->retry_after);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_EXCEPTION),
				 errmsg("HTTP status %ld from \"%s\"", s, url),
				 resp->retry_after >= 0 ?
				 errdetail("The server asked to retry after %d seconds.", resp->retry_after) :
				 errdetail("The server may answer later; a scheduled source retries.")));
	}
	if (s >= 400 && s < 500)
		ereport(ERROR,
				(errcode(MEDALLION_ERRCODE_HTTP_CLIENT_ERROR),
				 errmsg("HTTP status %ld from \"%s\"", s, url),
				 errdetail("The server refused the request; retrying it unchanged would not help."),
				 errhint("Check the URL and headers, then resume the pipeline.")));
	ereport(ERROR,
			(errcode(MEDALLION_ERRCODE_HTTP_FAILURE),
			 errmsg("HTTP status %ld from \"%s\"", s, url),
			 errdetail("Only a 2xx status is a success.")));
}

/*
 * A palloc'd copy of a string curl allocated; curl's is freed either way.
 */
static char *
take_curl_string(char *out)
{
	size_t		len = strlen(out);
	char	   *result = palloc_extended(len + 1, MCXT_ALLOC_NO_OOM);

	if (result)
		memcpy(result, out, len + 1);
	curl_free(out);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return result;
}

/*
 * A reference resolved against a base URL (palloc'd), or NULL when either
 * is not a URL.
 */
char *
medallion_http_resolve(const char *base, const char *ref)
{
	CURLU	   *u = curl_url();
	char	   *out = NULL;

	if (u == NULL)
		return NULL;
	if (curl_url_set(u, CURLUPART_URL, base, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
		curl_url_set(u, CURLUPART_URL, ref, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
		out = NULL;
	curl_url_cleanup(u);
	if (out == NULL)
		return NULL;
	return take_curl_string(out);
}

/*
 * The URL with "param=value" appended to its query (palloc'd).
 */
char *
medallion_http_add_query(const char *url, const char *param, int64 value)
{
	CURLU	   *u = curl_url();
	char	   *pair = psprintf("%s=" INT64_FORMAT, param, value);
	char	   *out = NULL;

	if (u == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
		curl_url_set(u, CURLUPART_QUERY, pair, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
		out = NULL;
	curl_url_cleanup(u);
	if (out == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid URL \"%s\"", url)));
	return take_curl_string(out);
}
