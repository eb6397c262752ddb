#!/usr/bin/env python3
"""sqlscan: finds the SQL text in medallion's C sources and the names it uses.

Shared by tools/sql-names (lists every operator, type and function the SQL
names) and tools/check-qualified (reports the ones not qualified).

How SQL is found: the C files are tokenised; adjacent string literals are
joined (a macro between them, e.g. INT64_FORMAT, stands for a value); a
joined literal is SQL when it is not inside an error report (ereport, elog,
errmsg, ...) or a call that takes plain text (strcmp, quote_literal_cstr,
...), and it reads like SQL (an upper-case SQL keyword, a cast, OPERATOR(,
a $n parameter, ARRAY[ or a spaced comparison).  In the format string of a
printf-like call (psprintf, appendStringInfo, ...) every conversion (%s, %d)
is a value inserted at run time: an identifier, a literal or a snippet the
user wrote, never an operator, type or function of medallion's own SQL.

What counts as unqualified (PostgreSQL 15 grammar):
  - an operator token not written OPERATOR(schema.op): =, <>, +, ->>, ?, ...;
    also the operators a construct looks up by name: IN / NOT IN (=, <>),
    IS [NOT] DISTINCT FROM (=), NULLIF (=), BETWEEN (>=, <=), LIKE (~~),
    ILIKE (~~*), SIMILAR TO (~), a simple CASE x WHEN (=), and a row
    comparison (a, b) >= (c, d);
  - a cast ::t, CAST(x AS t), a typed literal t 'x' or a column type t
    whose type is not schema-qualified, except the types the grammar itself
    binds to pg_catalog (int, integer, bigint, smallint, numeric, decimal,
    boolean, real, float, double precision, varchar, char, character,
    timestamp, time, interval, bit);
  - a function call f(...) not written schema.f(...), except the syntax that
    is not a function lookup (COALESCE, GREATEST, LEAST, EXISTS, EXTRACT,
    CAST, ROW, ARRAY, ...).
A line may carry the comment /* qualified-ok */ to accept what is on it.
"""

import os
import re
import sys

# ---------------------------------------------------------------------------
# C side
# ---------------------------------------------------------------------------

# Calls whose string arguments are messages, not SQL.
TEXT_CALLS = {
    'ereport', 'elog', 'errmsg', 'errmsg_internal', 'errmsg_plural', 'errdetail',
    'errdetail_internal', 'errdetail_plural', 'errdetail_log', 'errhint', 'errcontext',
    'errcontext_msg', 'errhint_plural', 'contract_error', 'error_array', 'raise_violation',
    'strcmp', 'strncmp', 'pg_strcasecmp', 'pg_strncasecmp', 'strstr', 'strchr', 'strspn',
    'strcspn', 'strtok_r', 'jb_get', 'quote_literal_cstr', 'quote_identifier',
    'quote_qualified_identifier', 'DefineCustomBoolVariable', 'DefineCustomIntVariable',
    'DefineCustomStringVariable', 'DefineCustomEnumVariable', 'DefineCustomRealVariable',
    'GetConfigOption', 'GetConfigOptionByName', 'set_config_option', 'SetConfigOption',
    'MarkGUCPrefixReserved', 'EmitWarningsOnPlaceholders', 'RequestAddinShmemSpace',
    'ShmemInitStruct', 'RequestNamedLWLockTrancheAndLock', 'LWLockNewTrancheId',
    'get_namespace_oid', 'get_extension_oid', 'medallion_check_name', 'pgstat_report_activity',
    'snprintf', 'strlcpy', 'sprintf', 'get_extension_schema', 'load_external_function',
    'BackgroundWorkerInitializeConnection', 'RegisterBackgroundWorker', 'error_json',
    'medallion_alert_raise',
    'medallion_alert_resolve', 'appendStringInfoChar', 'pg_strtoint32', 'defGetString',
    'jsonb_object_field', 'getenv', 'fopen', 'open', 'AllocateFile',
}
# printf-like calls: index of the format argument.
FORMAT_ARG = {'psprintf': 0, 'appendStringInfo': 1, 'pnstrdup': None, 'snprintf': 2,
              'elog': 1, 'errmsg': 0, 'errdetail': 0, 'errhint': 0, 'errcontext': 0}

C_TOKEN = re.compile(r'''
    (?P<ws>[ \t\r\f\v]+|\n)
  | (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<pp>^\#[ \t]*(?:include|if|ifdef|ifndef|else|elif|endif|pragma|undef|error)\b[^\n]*)
  | (?P<str>"(?:[^"\\\n]|\\.)*")
  | (?P<chr>'(?:[^'\\\n]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<num>\.?[0-9](?:[0-9A-Za-z_.]|[eEpP][+-])*)
  | (?P<punct>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^!~<>=?:;,.(){}\[\]#])
''', re.S | re.X | re.M)

C_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '"': '"', "'": "'", '\\': '\\', '0': '\0',
             'a': '\a', 'b': '\b', 'f': '\f', 'v': '\v', '?': '?'}


def c_unescape(body):
    return re.sub(r'\\(.)', lambda m: C_ESCAPES.get(m.group(1), m.group(1)), body)


class CTok:
    __slots__ = ('kind', 'text', 'line')

    def __init__(self, kind, text, line):
        self.kind, self.text, self.line = kind, text, line


def c_tokens(src):
    line = 1
    pos = 0
    out = []
    while pos < len(src):
        m = C_TOKEN.match(src, pos)
        if not m:
            pos += 1
            continue
        kind = m.lastgroup
        text = m.group(kind)
        if kind in ('str', 'chr', 'ident', 'num', 'punct'):
            out.append(CTok(kind, text, line))
        line += text.count('\n')
        pos = m.end()
    return out


class Fragment:
    """One SQL text: a joined C literal, with where it came from."""

    def __init__(self, path, line, text, is_format, call, buffer, lines):
        self.path, self.line, self.text = path, line, text
        self.is_format, self.call, self.buffer = is_format, call, buffer
        self.lines = lines          # (offset in text, C line) of each literal
        self.bare_operator = None   # a literal that is just an operator: qualified by its format?


BARE_OPERATOR = re.compile(r'\s*[-+*/<>=~!@#%^&|`?]+\s*')
SQLISH = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|MERGE|WITH|FROM|WHERE|AND|OR|NOT|CASE|WHEN|THEN|ELSE|END|"
    r"CREATE|ALTER|DROP|SET|VALUES|RETURNING|JOIN|ON|IS|NULL|CAST|AS|ARRAY|ORDER BY|GROUP BY|"
    r"LIMIT|COMMENT|TABLE|EXISTS|IN|ANY|ALL|TRUNCATE|LOCK|GRANT|REVOKE|DISTINCT|USING|COALESCE|"
    r"PARTITION|CHECK|NULLIF|BETWEEN|LIKE|ILIKE)\b"
    r"|::|OPERATOR\(|\$[0-9]|\$%|ARRAY\[| (=|<>|!=|<=|>=|<|>|\|\||->>|->|#>>|#>|\?|@>|<@|~|\+|\*) ")


def macro_end(toks, i):
    """The index after a macro (with its arguments) at toks[i], or None."""
    if toks[i].kind != 'ident':
        return None     # (between literals any identifier is a macro, or a macro's parameter)
    j = i + 1
    if j < len(toks) and toks[j].text == '(':
        depth = 0
        while j < len(toks):
            if toks[j].text == '(':
                depth += 1
            elif toks[j].text == ')':
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return None
    return j


def c_fragments(path, src):
    """Every SQL-looking joined string literal of a C file."""
    toks = c_tokens(src)
    frags = []
    stack = []   # per open paren: [call name, arg index, first-arg text]
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == 'punct' and t.text in '([{':
            name = None
            if t.text == '(' and i > 0 and toks[i - 1].kind == 'ident':
                name = toks[i - 1].text
            stack.append([name, 0, '', None])
            i += 1
            continue
        if t.kind == 'punct' and t.text in ')]}':
            if stack:
                stack.pop()
            i += 1
            continue
        if t.kind == 'punct' and t.text == ',' and stack:
            stack[-1][1] += 1
            i += 1
            continue
        if t.kind == 'punct' and t.text == ';':
            i += 1
            continue
        if stack and stack[-1][1] == 0 and t.kind != 'str':
            stack[-1][2] += t.text
        if t.kind != 'str':
            i += 1
            continue
        # a run of literals (and format macros between them)
        start = i
        parts = []
        lines = []
        text = ''
        while i < n:
            if toks[i].kind == 'str':
                lines.append((len(text), toks[i].line))
                text += c_unescape(toks[i].text[1:-1])
                i += 1
                continue
            # a macro between literals (INT64_FORMAT, or one with arguments) stands for text
            # put in at compile time: a value, as far as the SQL around it goes
            end = macro_end(toks, i)
            if end is None or not (end < n and toks[end].kind == 'str'):
                break
            text += '%s'
            i = end
        calls = [s[0] for s in stack if s[0]]
        if any(c in TEXT_CALLS for c in calls):
            continue
        inner = stack[-1] if stack else None
        call = inner[0] if inner else None
        fmt_index = FORMAT_ARG.get(call) if call else None
        is_format = inner is not None and fmt_index is not None and inner[1] == fmt_index
        if call in ('appendStringInfoString',):
            is_format = False
        buffer = inner[2] if inner and call and call.startswith('appendStringInfo') else ''
        if is_format:
            inner[3] = text
        if inner is not None and fmt_index is not None and inner[1] > fmt_index and \
                inner[3] is not None and BARE_OPERATOR.fullmatch(text):
            # an operator chosen in C and put in by a conversion of the format
            convs = [m for m in FORMAT_CONV.finditer(inner[3]) if m.group(0) != '%%']
            j = inner[1] - fmt_index - 1
            before = inner[3][:convs[j].start()] if j < len(convs) else ''
            fr = Fragment(path, toks[start].line, text.strip(), False, call, buffer, lines)
            fr.bare_operator = bool(re.search(r'OPERATOR\(\s*[A-Za-z_"][^()]*\.\s*$', before))
            frags.append(fr)
            continue
        if not SQLISH.search(text):
            continue
        frags.append(Fragment(path, toks[start].line, text, is_format, call, buffer, lines))
    return frags


# ---------------------------------------------------------------------------
# SQL side
# ---------------------------------------------------------------------------

SQL_TOKEN = re.compile(r'''
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<lit>[EeXxBb]?'(?:[^']|'')*'?)
  | (?P<qid>"(?:[^"]|"")*"?)
  | (?P<ph>\x00)
  | (?P<param>\$[0-9]+)
  | (?P<word>[A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)
  | (?P<num>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)
  | (?P<cast>::)
  | (?P<op>[-+*/<>=~!@\#%^&|`?]+)
  | (?P<punct>[(),;\[\].:])
''', re.S | re.X)

FORMAT_CONV = re.compile(r'%%|%[-+ #0]*(?:[0-9]+|\*)?(?:\.(?:[0-9]+|\*))?(?:hh|h|ll|l|z|j|t|L)?[diouxXeEfgGcsp]')


class STok:
    __slots__ = ('kind', 'text', 'off')

    def __init__(self, kind, text, off):
        self.kind, self.text, self.off = kind, text, off

    @property
    def up(self):
        return self.text.upper()


def sql_tokens(text, is_format):
    # a conversion is a value put in at run time, also in a literal kept for later use as a
    # format; %% is a % only where the literal is known to be a format
    text = FORMAT_CONV.sub(lambda m: ('%' if is_format else '%%') if m.group(0) == '%%' else '\x00', text)
    out = []
    pos = 0
    while pos < len(text):
        m = SQL_TOKEN.match(text, pos)
        if not m:
            out.append(STok('punct', text[pos], pos))
            pos += 1
            continue
        kind = m.lastgroup
        if kind not in ('ws', 'comment'):
            tok = STok(kind, m.group(kind), pos)
            last = out[-1] if out else None
            # %s_source_seq, _dropped_%s: one identifier made of a value and a word
            if last is not None and last.off + len(last.text) == pos and \
                    {last.kind, kind} <= {'ph', 'word', 'qid'} and 'ph' in (last.kind, kind):
                last.text += tok.text
                last.kind = 'ph'
            else:
                out.append(tok)
        pos = m.end()
    return out


# Types the grammar binds to pg_catalog itself (SystemTypeName in gram.y).
KEYWORD_TYPES = {'int', 'integer', 'bigint', 'smallint', 'numeric', 'decimal', 'dec', 'boolean',
                 'real', 'float', 'double', 'varchar', 'char', 'character', 'nchar', 'national',
                 'timestamp', 'time', 'interval', 'bit'}
# Non-keyword type names (resolved through search_path) recognised in column
# definitions and typed literals.
PLAIN_TYPES = {'text', 'jsonb', 'json', 'timestamptz', 'date', 'xid8', 'xid', 'oid', 'regclass',
               'regrole', 'regnamespace', 'regproc', 'regprocedure', 'regtype', 'name', 'bytea',
               'uuid', 'int8', 'int4', 'int2', 'bool', 'float8', 'float4', 'inet', 'cidr', 'tsvector',
               'pg_snapshot', 'txid_snapshot', 'timetz', 'bpchar', 'money', 'xml', 'cstring',
               'record', 'void', 'anyelement', 'anyarray', 'tid', 'pg_lsn'}
# Words followed by "(" that are syntax, not a function looked up by name.
NOT_FUNCTIONS = {
    'and', 'or', 'not', 'in', 'exists', 'any', 'all', 'some', 'as', 'on', 'using', 'values',
    'select', 'from', 'where', 'when', 'then', 'else', 'case', 'end', 'cast', 'extract',
    'coalesce', 'greatest', 'least', 'row', 'array', 'rows', 'filter', 'over', 'group',
    'within', 'lateral', 'join', 'check', 'key', 'unique', 'references', 'range', 'list',
    'hash', 'default', 'identity', 'conflict', 'set', 'into', 'table', 'index', 'with',
    'returning', 'by', 'to', 'overlay', 'position', 'substring', 'trim', 'treat', 'collate',
    'is', 'null', 'true', 'false', 'like', 'ilike', 'between', 'distinct', 'limit', 'offset',
    'fetch', 'for', 'update', 'delete', 'insert', 'merge', 'matched', 'do', 'nothing',
    'partition', 'of', 'if', 'primary', 'foreign', 'constraint', 'include', 'having', 'union',
    'except', 'intersect', 'order', 'only', 'returns', 'execute', 'function', 'procedure',
    'grouping', 'nullif', 'xmlelement', 'xmlforest', 'xmlconcat', 'normalize', 'window',
    'generated', 'stored', 'including', 'like', 'tablespace', 'concurrently', 'cube', 'rollup',
    'sets', 'ordinality', 'exclude', 'recursive', 'materialized', 'search', 'cycle', 'escape',
    'current_date', 'current_time', 'current_timestamp', 'localtime', 'localtimestamp',
    'current_user', 'session_user', 'user', 'current_role', 'current_catalog', 'current_schema',
} | KEYWORD_TYPES
# Keywords after which "name (" is a relation with a column list, or a name.
RELATION_CONTEXT = {'into', 'table', 'references', 'index', 'on', 'key', 'unique', 'view',
                    'trigger', 'exists', 'constraint', 'sequence', 'type', 'domain', 'schema',
                    'only', 'update', 'partition', 'of', 'conflict', 'function', 'procedure'}
KEYWORDS = NOT_FUNCTIONS | RELATION_CONTEXT | {
    'not', 'null', 'asc', 'desc', 'nulls', 'first', 'last', 'both', 'leading', 'trailing',
    'zone', 'at', 'local', 'outer', 'inner', 'left', 'right', 'full', 'cross', 'natural',
    'before', 'after', 'instead', 'each', 'statement', 'row', 'add', 'attach', 'detach',
    'comment', 'create', 'alter', 'drop', 'truncate', 'lock', 'nowait', 'skip', 'locked',
    'share', 'no', 'key', 'always', 'cascade', 'restrict', 'owner', 'rename', 'column',
    'temp', 'temporary', 'unlogged', 'replace', 'grant', 'revoke', 'usage', 'privileges',
    'epoch', 'year', 'month', 'day', 'hour', 'minute', 'second', 'precision', 'varying',
}
# Operators that are not operators: =>, :=, and the * of "SELECT *" (handled apart).
NOT_OPERATORS = {'=>', ':='}
IMPLICIT = {'in': '=', 'between': '>= and <=', 'like': '~~', 'ilike': '~~*', 'similar': '~',
            'nullif': '='}


class Name:
    """One use of an operator, type or function in a fragment."""

    def __init__(self, kind, name, qualified, frag, off, why='', arity=None):
        self.kind, self.name, self.qualified = kind, name, qualified
        self.frag, self.off, self.why, self.arity = frag, off, why, arity

    @property
    def line(self):
        ln = self.frag.line
        for off, l in self.frag.lines:
            if off <= self.off:
                ln = l
        return ln


def _arity(toks, j):
    """Arguments of the call whose "(" is toks[j]."""
    depth = 0
    n = 0
    empty = True
    for k in range(j, len(toks)):
        t = toks[k]
        if t.kind == 'punct' and t.text in '([':
            depth += 1
        elif t.kind == 'punct' and t.text in ')]':
            depth -= 1
            if depth == 0:
                return 0 if empty else n + 1
        elif depth == 1:
            empty = False
            if t.kind == 'punct' and t.text == ',':
                n += 1
    return None


def _word(t):
    return t is not None and t.kind == 'word'


def analyse(frag):
    """Every operator, type and function a fragment names."""
    if frag.bare_operator is not None:
        return [Name('operator', frag.text, frag.bare_operator, frag, 0,
                     'operator passed to a %s() conversion' % frag.call)]
    toks = sql_tokens(frag.text, frag.is_format)
    names = []
    n = len(toks)
    get = lambda k: toks[k] if 0 <= k < n else None
    cast_depths = []          # paren depths of open CAST(
    set_depth = None          # paren depth of an UPDATE ... SET list
    ddl_depth = None          # paren depth of a CREATE TABLE column list
    depth = 0
    is_merge_set = 'set' in frag.buffer.lower()

    def take_type(k, why):
        """The type name starting at toks[k]; returns the index after it."""
        t = get(k)
        if t is None:
            return k
        if t.kind == 'ph':
            return k + 1       # a type from a format argument: checked in C (format_type)
        if t.kind not in ('word', 'qid'):
            return k
        if get(k + 1) is not None and get(k + 1).text == '.' and get(k + 2) is not None:
            names.append(Name('type', get(k + 2).text.strip('"').lower(), True, frag, t.off, why))
            k += 3
        else:
            w = t.text.strip('"').lower()
            if w == 'double' and _word(get(k + 1)) and get(k + 1).up == 'PRECISION':
                k += 1
            if w in KEYWORD_TYPES:
                names.append(Name('type', w, True, frag, t.off, why + ' (keyword type, bound to pg_catalog)'))
            else:
                names.append(Name('type', w, False, frag, t.off, why))
            k += 1
        # typmod, array brackets, WITH TIME ZONE
        if get(k) is not None and get(k).text == '(':
            d = 0
            while k < n:
                if toks[k].text == '(':
                    d += 1
                elif toks[k].text == ')':
                    d -= 1
                    if d == 0:
                        k += 1
                        break
                k += 1
        while get(k) is not None and get(k).text == '[':
            k += 2 if get(k + 1) is not None and get(k + 1).text == ']' else 1
        return k

    k = 0
    while k < n:
        t = toks[k]
        prev = get(k - 1)
        nxt = get(k + 1)
        if t.kind == 'punct' and t.text == '(':
            depth += 1
            k += 1
            continue
        if t.kind == 'punct' and t.text == ';':
            set_depth = ddl_depth = None
            cast_depths = []
        if t.kind == 'punct' and t.text == ')':
            if cast_depths and cast_depths[-1] == depth:
                cast_depths.pop()
            if ddl_depth == depth:
                ddl_depth = None
            depth -= 1
            if set_depth is not None and depth < set_depth:
                set_depth = None
            k += 1
            continue
        if t.kind == 'cast':
            k = take_type(k + 1, 'cast ::')
            continue
        if t.kind == 'word':
            w = t.text.lower()
            if w == 'operator' and nxt is not None and nxt.text == '(':
                j = k + 2
                body = ''
                while j < n and toks[j].text != ')':
                    body += toks[j].text
                    j += 1
                if '.' in body:
                    names.append(Name('operator', body.split('.', 1)[1].replace('\x00', '%s'), True, frag, t.off, 'OPERATOR()'))
                else:
                    names.append(Name('operator', body, False, frag, t.off, 'OPERATOR() without schema'))
                k = j + 1
                continue
            if w == 'cast' and nxt is not None and nxt.text == '(':
                cast_depths.append(depth + 1)
            if w == 'as' and cast_depths and cast_depths[-1] == depth:
                k = take_type(k + 1, 'CAST(... AS type)')
                continue
            if w == 'set' and (prev is None or prev.up not in ('SET', 'OPTIONS')):
                set_depth = depth
            if w in ('where', 'from', 'returning') and set_depth == depth:
                set_depth = None
            if w == 'table' and prev is not None and prev.up == 'CREATE':
                # CREATE TABLE name ( ... column types
                j = k + 1
                while j < n and toks[j].text != '(' and toks[j].text != ';':
                    j += 1
                if get(j) is not None and get(j).text == '(' and not (_word(get(j + 1)) and get(j + 1).up == 'LIKE'):
                    ddl_depth = depth + 1
            if w in IMPLICIT and w != 'nullif':
                if w == 'in' and not (nxt is not None and nxt.text == '('):
                    pass
                elif w == 'like' and (prev is None or prev.text in ('(', ',')):
                    pass        # CREATE TABLE t (LIKE parent ...)
                elif w == 'similar' and not (_word(nxt) and nxt.up == 'TO'):
                    pass
                else:
                    op = IMPLICIT[w]
                    if w == 'in' and _word(prev) and prev.up == 'NOT':
                        op = '<>'
                    names.append(Name('operator', op, False, frag, t.off, '%s looks up %s by name' % (w.upper(), op)))
            if w == 'distinct' and _word(prev) and prev.up in ('IS', 'NOT') and _word(nxt) and nxt.up == 'FROM':
                names.append(Name('operator', '=', False, frag, t.off, 'IS DISTINCT FROM looks up = by name'))
            if w == 'case' and nxt is not None and not (_word(nxt) and nxt.up == 'WHEN'):
                names.append(Name('operator', '=', False, frag, t.off, 'CASE x WHEN looks up = by name'))
            # typed literal: type 'string'
            if nxt is not None and nxt.kind == 'lit' and w in PLAIN_TYPES and not (prev is not None and prev.text == '.'):
                names.append(Name('type', w, False, frag, t.off, "typed literal type '...'"))
            # qualified typed literal: schema.type 'x'
            if nxt is not None and nxt.text == '(' and w not in NOT_FUNCTIONS:
                qualified = prev is not None and prev.text == '.'
                relctx = False
                p = k - 1
                if qualified:
                    p = k - 3
                pw = get(p)
                if _word(pw) and pw.text.lower() in RELATION_CONTEXT:
                    relctx = True
                if _word(pw) and pw.up == 'AS' and not (cast_depths and cast_depths[-1] == depth):
                    relctx = True   # alias column list
                if not relctx:
                    fname = w if not qualified else t.text.lower()
                    schema = get(k - 2).text if qualified and get(k - 2) is not None else None
                    names.append(Name('function', fname, qualified, frag, t.off,
                                      'call' if not qualified else 'call %s.' % ('%s' if schema == '\x00' else schema),
                                      _arity(toks, k + 1)))
            # column definitions of CREATE TABLE: (name type, name type ...)
            if ddl_depth == depth and prev is not None and (prev.text in ('(', ',')) and \
                    w not in ('constraint', 'primary', 'unique', 'check', 'foreign', 'like', 'exclude'):
                k = take_type(k + 1, 'column type')
                continue
            # a plain type named after a column in a fragment of column definitions
            if ddl_depth is None and prev is not None and prev.kind in ('word', 'qid', 'ph') and \
                    w in PLAIN_TYPES and (get(k - 2) is None or get(k - 2).text in (',', '(')) and \
                    not (nxt is not None and nxt.text in ('.', '(')) and \
                    prev.text.lower() not in KEYWORDS:
                names.append(Name('type', w, False, frag, t.off, 'column type'))
        if t.kind == 'op':
            op = t.text
            if op in NOT_OPERATORS:
                k += 1
                continue
            if op == '*' and (prev is None or prev.text in ('(', ',', '.') or
                              (_word(prev) and prev.up in ('SELECT', 'DISTINCT', 'RETURNING'))):
                k += 1
                continue
            if op == '-' and nxt is not None and nxt.kind == 'num' and \
                    (prev is None or prev.kind in ('op', 'punct') and prev.text != ')' or
                     (_word(prev) and prev.text.lower() in KEYWORDS)):
                k += 1      # a negative constant
                continue
            if op == '=' and set_depth == depth and prev is not None and \
                    (prev.kind in ('word', 'qid', 'ph')) and \
                    (get(k - 2) is None or get(k - 2).text == ',' or (_word(get(k - 2)) and get(k - 2).up == 'SET')):
                k += 1      # SET column = value
                continue
            if op == '=' and (is_merge_set or frag.text.rstrip().endswith(',')) and \
                    prev is not None and prev.kind == 'ph' and \
                    all(x.kind == 'punct' and x.text == ',' for x in toks[:k - 1]):
                k += 1      # a SET list built column by column
                continue
            if op == '=' and depth >= 1 and _word(get(k - 2)) and get(k - 2).up == 'WITH':
                k += 1      # storage parameters
                continue
            why = 'operator'
            if op in ('<', '>', '<=', '>=', '=', '<>') and prev is not None and prev.text == ')' and \
                    nxt is not None and nxt.text == '(':
                why = 'row comparison'
            names.append(Name('operator', op, False, frag, t.off, why))
        k += 1
    # NULLIF(a, b) compares with =
    for j, t in enumerate(toks):
        if _word(t) and t.text.lower() == 'nullif' and get(j + 1) is not None and get(j + 1).text == '(':
            names.append(Name('operator', '=', False, frag, t.off, 'NULLIF looks up = by name'))
    return names


# C calls that put an unqualified type name into SQL text at run time.
C_NAME_CALLS = re.compile(r'\b(format_type_be|format_type_with_typemod)\s*\(')


def c_call_findings(path, src):
    """Calls whose result names a type, relation or function unqualified."""
    out = []
    lines = src.split('\n')
    in_comment = False
    for i, line in enumerate(lines, 1):
        code = line
        if in_comment:
            if '*/' in code:
                code = code.split('*/', 1)[1]
                in_comment = False
            else:
                continue
        code = re.sub(r'/\*.*?\*/', '', code)
        if '/*' in code:
            code = code.split('/*', 1)[0]
            in_comment = True
        code = re.sub(r'"(?:[^"\\]|\\.)*"', '""', code.split('//')[0])
        for m in C_NAME_CALLS.finditer(code):
            out.append((path, i, m.group(1)))
    return out


def sql_statement_end(text, i):
    """The index after the statement starting at text[i] (quotes and $tag$ bodies skipped)."""
    n = len(text)
    while i < n:
        c = text[i]
        if c == "'":
            j = i + 1
            while j < n:
                if text[j] == "'" and (j + 1 >= n or text[j + 1] != "'"):
                    break
                j += 2 if text[j] == "'" else 1
            i = j + 1
            continue
        if c == '-' and text.startswith('--', i):
            j = text.find('\n', i)
            i = n if j < 0 else j
            continue
        if c == '$':
            m = re.match(r'\$[A-Za-z_]*\$', text[i:])
            if m:
                j = text.find(m.group(0), i + len(m.group(0)))
                i = n if j < 0 else j + len(m.group(0))
                continue
        if c == ';':
            return i + 1
        i += 1
    return n


def sql_function_findings(root):
    """Functions of the (not frozen) SQL scripts whose body is parsed when called -- plpgsql,
    or SQL with a quoted body -- and that do not pin search_path: their SQL would use the
    caller's objects.  (A SQL-standard body, RETURN or BEGIN ATOMIC, is bound when created.)"""
    out = []
    sqldir = os.path.join(root, 'sql')
    if not os.path.isdir(sqldir):
        return out
    for f in sorted(os.listdir(sqldir)):
        if not re.fullmatch(r'medallion--[0-9.]+--[0-9.]+\.sql', f):
            continue        # the released scripts are frozen; upgrades are checked
        text = open(os.path.join(sqldir, f), encoding='utf-8', errors='replace').read()
        for m in re.finditer(r'\bCREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|PROCEDURE)\s+([^\s(]+)', text, re.I):
            stmt = text[m.start():sql_statement_end(text, m.start())]
            lang = re.search(r'\bLANGUAGE\s+(\w+)', stmt, re.I)
            lang = lang.group(1).lower() if lang else 'sql'
            if lang in ('c', 'internal'):
                continue
            if lang == 'sql' and not re.search(r'\bAS\s+(\$|\')', stmt, re.I):
                continue    # SQL-standard body
            if re.search(r'\bSET\s+search_path\b', stmt, re.I):
                continue
            line = text.count('\n', 0, m.start()) + 1
            out.append((os.path.join('sql', f), line, m.group(2), lang))
    return out


def source_files(root):
    files = []
    for d, _, fs in os.walk(os.path.join(root, 'src')):
        for f in fs:
            if f.endswith('.c'):
                files.append(os.path.join(d, f))
    return sorted(files)


def scan(root):
    """(fragments, names, c_calls) over every src/**/*.c."""
    frags, names, ccalls = [], [], []
    for path in source_files(root):
        with open(path, encoding='utf-8', errors='replace') as fh:
            src = fh.read()
        rel = os.path.relpath(path, root)
        srclines = src.split('\n')
        for fr in c_fragments(rel, src):
            frags.append(fr)
            for nm in analyse(fr):
                ln = nm.line
                here = srclines[ln - 1] if ln - 1 < len(srclines) else ''
                before = srclines[ln - 2] if ln >= 2 else ''
                if 'qualified-ok' in here or 'qualified-ok' in before:
                    nm.qualified = True
                    nm.why += ' (marked qualified-ok)'
                names.append(nm)
        for p, ln, fn in c_call_findings(rel, src):
            here = srclines[ln - 1]
            before = srclines[ln - 2] if ln >= 2 else ''
            if 'qualified-ok' in here or 'qualified-ok' in before:
                continue
            ccalls.append((p, ln, fn))
    return frags, names, ccalls


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
