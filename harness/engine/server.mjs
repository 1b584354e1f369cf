// Stand-in for Prisma's native query engine, for Prisma Client Python 0.11.0 (see README.md).
//
// Prisma Client Python spawns `<engine> -p <port> --enable-metrics --enable-raw-queries` with the
// schema in PRISMA_DML_PATH and the database in OVERWRITE_DATASOURCES or the schema's env var, then
// talks GraphQL over HTTP to it. This process serves that HTTP API on 127.0.0.1 and executes every
// request through @prisma/query-engine-wasm (Prisma's own query engine compiled to WebAssembly) with
// the @prisma/adapter-pg driver adapter: GraphQL is translated to Prisma's JSON protocol and the
// results back to what the native engine's GraphQL protocol returned.
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const HOST = '127.0.0.1';
const T0 = Date.now();

function log(level, msg, extra = {}) {
  process.stderr.write(JSON.stringify({ level, target: 'query-engine-standin', message: msg, ...extra }) + '\n');
}

// ---------------------------------------------------------------------------------------------------
// Command line and environment
function parseArgs(argv) {
  const opts = { port: 4466, flags: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-p' || a === '--port') opts.port = Number(argv[++i]);
    else if (a.startsWith('--port=')) opts.port = Number(a.slice(7));
    else opts.flags.add(a);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error(`bad port ${opts.port}`);
  }
  return opts;
}

function readSchema() {
  if (process.env.PRISMA_DML_PATH) return fs.readFileSync(process.env.PRISMA_DML_PATH, 'utf8');
  if (process.env.PRISMA_DML) return Buffer.from(process.env.PRISMA_DML, 'base64').toString('utf8');
  throw new Error('neither PRISMA_DML_PATH nor PRISMA_DML is set');
}

// ---------------------------------------------------------------------------------------------------
// The schema: which fields are Json, which are relations (needed to encode inputs for the JSON protocol)
export function parseSchema(text) {
  // comments out; braces inside string literals (e.g. `Json @default("{}")`) blanked, so a block ends at its
  // own closing brace, not at the first `}` of a default value (which cut every field after it)
  const clean = text.replace(/\/\/[^\n]*/g, '')
    .replace(/"(?:[^"\\\n]|\\.)*"/g, (lit) => lit.replace(/[{}]/g, ' '));
  const models = new Map();
  const enums = new Set();
  let datasourceEnv = 'DATABASE_URL';
  let datasourceUrl = null;
  const blockRe = /(model|enum|datasource|generator|view|type)\s+(\w+)\s*\{([^}]*)\}/g;
  let m;
  while ((m = blockRe.exec(clean)) !== null) {
    const [, kind, name, body] = m;
    if (kind === 'enum') enums.add(name);
    if (kind === 'datasource') {
      const env = /url\s*=\s*env\(\s*"([^"]+)"\s*\)/.exec(body);
      const lit = /url\s*=\s*"([^"]+)"/.exec(body);
      if (env) datasourceEnv = env[1];
      else if (lit) datasourceUrl = lit[1];
    }
    if (kind === 'model' || kind === 'view') {
      const fields = new Map();
      for (const line of body.split('\n')) {
        const fm = /^\s*(\w+)\s+(\w+)(\[\])?(\?)?/.exec(line);
        if (!fm || line.trim().startsWith('@@')) continue;
        fields.set(fm[1], { type: fm[2], list: !!fm[3], optional: !!fm[4] });
      }
      models.set(name, fields);
    }
  }
  for (const fields of models.values()) {
    for (const f of fields.values()) f.relation = models.has(f.type) ? f.type : null;
  }
  return { models, enums, datasourceEnv, datasourceUrl };
}

// ---------------------------------------------------------------------------------------------------
// A parser for the GraphQL subset Prisma Client Python's query builder emits
class GqlParser {
  constructor(src) { this.s = src; this.i = 0; }
  fail(msg) { throw new Error(`GraphQL parse error at ${this.i}: ${msg}: ${JSON.stringify(this.s.slice(this.i, this.i + 40))}`); }
  ws() {
    const s = this.s;
    while (this.i < s.length) {
      const c = s[this.i];
      if (c === ' ' || c === '\n' || c === '\t' || c === '\r' || c === ',') this.i++;
      else if (c === '#') { while (this.i < s.length && s[this.i] !== '\n') this.i++; }
      else break;
    }
  }
  peek() { this.ws(); return this.s[this.i]; }
  expect(c) { if (this.peek() !== c) this.fail(`expected '${c}'`); this.i++; }
  name() {
    this.ws();
    const m = /^[_A-Za-z][_0-9A-Za-z]*/.exec(this.s.slice(this.i, this.i + 256));
    if (!m) this.fail('expected a name');
    this.i += m[0].length;
    return m[0];
  }
  document() {
    const op = this.name();
    if (op !== 'query' && op !== 'mutation') this.fail(`unknown operation ${op}`);
    const sel = this.selectionSet();
    return { op, selection: sel };
  }
  selectionSet() {
    this.expect('{');
    const out = [];
    while (this.peek() !== '}') {
      if (this.i >= this.s.length) this.fail('unterminated selection');
      let alias = null;
      let name = this.name();
      if (this.peek() === ':') { this.i++; alias = name; name = this.name(); }
      let args = null;
      let sub = null;
      if (this.peek() === '(') args = this.arguments();
      if (this.peek() === '{') sub = this.selectionSet();
      out.push({ alias, name, args, selection: sub });
    }
    this.i++;
    return out;
  }
  arguments() {
    this.expect('(');
    const out = {};
    while (this.peek() !== ')') {
      if (this.i >= this.s.length) this.fail('unterminated arguments');
      const key = this.name();
      this.expect(':');
      out[key] = this.value();
    }
    this.i++;
    return out;
  }
  value() {
    const c = this.peek();
    if (c === '{') {
      this.i++;
      const obj = {};
      while (this.peek() !== '}') {
        if (this.i >= this.s.length) this.fail('unterminated object');
        const key = this.peek() === '"' ? this.string() : this.name();
        this.expect(':');
        obj[key] = this.value();
      }
      this.i++;
      return obj;
    }
    if (c === '[') {
      this.i++;
      const arr = [];
      while (this.peek() !== ']') {
        if (this.i >= this.s.length) this.fail('unterminated list');
        arr.push(this.value());
      }
      this.i++;
      return arr;
    }
    if (c === '"') return this.string();
    const rest = this.s.slice(this.i, this.i + 400);
    const num = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(rest);
    if (num) {
      this.i += num[0].length;
      const text = num[0];
      if (/^-?\d+$/.test(text) && !Number.isSafeInteger(Number(text))) return { $bigint: text };
      return Number(text);
    }
    const word = /^(true|false|null|NaN|Infinity|-Infinity)\b/.exec(rest);
    if (word) {
      this.i += word[0].length;
      return { true: true, false: false, null: null, NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity }[word[0]];
    }
    // enum literal (bare name)
    return this.name();
  }
  string() {
    this.ws();
    const s = this.s;
    if (s[this.i] !== '"') this.fail('expected a string');
    let j = this.i + 1;
    while (j < s.length) {
      const c = s[j];
      if (c === '\\') j += 2;
      else if (c === '"') break;
      else j++;
    }
    if (j >= s.length) this.fail('unterminated string');
    const lit = s.slice(this.i, j + 1);
    this.i = j + 1;
    return JSON.parse(lit);
  }
}

export function parseGraphQL(src) {
  const p = new GqlParser(src);
  const doc = p.document();
  p.ws();
  if (p.i !== src.length) p.fail('trailing input');
  return doc;
}

// ---------------------------------------------------------------------------------------------------
// GraphQL (Prisma Client Python) -> JSON protocol
const ACTION_RE = /^(findUnique|findFirst|findMany|createOne|createMany|updateOne|updateMany|deleteOne|deleteMany|upsertOne|aggregate|groupBy)(\w+?)(OrThrow)?$/;
const JSON_FILTER_KEYS = new Set(['equals', 'not', 'array_contains', 'array_starts_with', 'array_ends_with',
  'string_contains', 'string_starts_with', 'string_ends_with', 'gt', 'gte', 'lt', 'lte']);
const WHERE_ARGS = new Set(['where', 'cursor', 'having']);
const DATA_ARGS = new Set(['data', 'create', 'update']);

export class Translator {
  constructor(schema) { this.schema = schema; }

  // plain JSON values from the GraphQL parser, with our big-integer marker turned into tagged BigInt
  plain(v) {
    if (v === null || typeof v !== 'object') return v;
    if (Array.isArray(v)) return v.map((x) => this.plain(x));
    if (Object.prototype.hasOwnProperty.call(v, '$bigint') && Object.keys(v).length === 1) {
      return { $type: 'BigInt', value: v.$bigint };
    }
    const out = {};
    for (const [k, x] of Object.entries(v)) out[k] = this.plain(x);
    return out;
  }

  jsonValue(v, kind) {
    // A Json field's value: Prisma Client Python sends the JSON text as a string. Sent as a plain string
    // the JSON protocol would store a JSON *string* (double encoding): tag it as Json.
    const tag = (x) => (typeof x === 'string' ? { $type: 'Json', value: x } : this.plain(x));
    if (v === null || v === undefined) return v;
    if (typeof v === 'string') return tag(v);
    if (Array.isArray(v)) return v.map((x) => tag(x));
    if (typeof v === 'object') {
      const out = {};
      for (const [k, x] of Object.entries(v)) {
        if (kind === 'data' && k === 'set') out[k] = tag(x);
        else if (kind === 'where' && JSON_FILTER_KEYS.has(k)) out[k] = tag(x);
        else out[k] = this.plain(x);
      }
      return out;
    }
    return v;
  }

  fields(model, obj, kind) {
    if (obj === null || typeof obj !== 'object') return this.plain(obj);
    if (Array.isArray(obj)) return obj.map((x) => this.fields(model, x, kind));
    const fields = this.schema.models.get(model);
    const out = {};
    for (const [k, v] of Object.entries(obj)) {
      const f = fields ? fields.get(k) : undefined;
      if (!f) {
        if (k === 'AND' || k === 'OR' || k === 'NOT') out[k] = this.fields(model, v, 'where');
        else if (fields && !fields.has(k) && v && typeof v === 'object' && !Array.isArray(v)) {
          // compound unique key (e.g. `user_id_date: {...}`) or an unknown key: keep walking
          out[k] = this.fields(model, v, kind);
        } else out[k] = this.plain(v);
      } else if (f.relation) out[k] = this.relation(f.relation, v, kind);
      else if (f.type === 'Json') out[k] = this.jsonValue(v, kind);
      else out[k] = this.plain(v);
    }
    return out;
  }

  relation(model, v, kind) {
    if (v === null || typeof v !== 'object') return this.plain(v);
    if (Array.isArray(v)) return v.map((x) => this.relation(model, x, kind));
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      if (kind === 'where') {
        out[k] = ['some', 'every', 'none', 'is', 'isNot'].includes(k)
          ? this.fields(model, x, 'where') : this.fields(model, { [k]: x }, 'where')[k];
        continue;
      }
      switch (k) {
        case 'create': out[k] = this.fields(model, x, 'data'); break;
        case 'connect': case 'disconnect': case 'delete': case 'set': case 'deleteMany':
          out[k] = typeof x === 'boolean' ? x : this.fields(model, x, 'where'); break;
        case 'connectOrCreate': case 'upsert': case 'update': case 'updateMany': case 'createMany':
          out[k] = this.topArgs(model, x); break;
        default: out[k] = this.fields(model, { [k]: x }, 'data')[k];
      }
    }
    return out;
  }

  topArgs(model, args) {
    if (args === null || typeof args !== 'object') return this.plain(args);
    if (Array.isArray(args)) return args.map((a) => this.topArgs(model, a));
    const out = {};
    let looksLikeData = true;
    for (const k of Object.keys(args)) if (WHERE_ARGS.has(k) || DATA_ARGS.has(k)) looksLikeData = false;
    if (looksLikeData) return this.fields(model, args, 'data'); // to-one nested `update: {field: ...}`
    for (const [k, v] of Object.entries(args)) {
      if (WHERE_ARGS.has(k)) out[k] = this.fields(model, v, 'where');
      else if (DATA_ARGS.has(k)) out[k] = this.fields(model, v, 'data');
      else out[k] = this.plain(v);
    }
    return out;
  }

  selection(model, items) {
    const out = {};
    const fields = model ? this.schema.models.get(model) : null;
    for (const it of items || []) {
      const f = fields ? fields.get(it.name) : undefined;
      if (!it.selection && !it.args) { out[it.name] = true; continue; }
      const rel = f && f.relation ? f.relation : model; // aggregates (_count, _sum…) stay on the model
      const node = {};
      if (it.args) node.arguments = this.topArgs(rel, it.args);
      node.selection = it.selection ? this.selection(f && f.relation ? f.relation : null, it.selection)
        : { $scalars: true, $composites: true };
      out[it.name] = node;
    }
    return out;
  }

  // one top-level field of a GraphQL document -> { json, action, model, kind }
  query(src) {
    const doc = parseGraphQL(src);
    if (doc.selection.length !== 1) throw new Error(`expected exactly one root field, got ${doc.selection.length}`);
    const root = doc.selection[0];
    const args = root.args || {};
    if (root.name === 'queryRaw' || root.name === 'executeRaw') {
      return {
        kind: root.name,
        json: { action: root.name, query: { arguments: { query: args.query, parameters: args.parameters ?? '[]' }, selection: {} } },
      };
    }
    const m = ACTION_RE.exec(root.name);
    if (!m || !this.schema.models.has(m[2])) throw new Error(`unknown operation ${root.name}`);
    const action = m[1] + (m[3] || '');
    const model = m[2];
    return {
      kind: 'model',
      json: {
        modelName: model,
        action,
        query: { arguments: this.topArgs(model, args), selection: this.selection(model, root.selection || []) },
      },
    };
  }
}

// ---------------------------------------------------------------------------------------------------
// JSON protocol results -> what the native engine's GraphQL protocol returned
function unwrap(v) {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(unwrap);
  if (typeof v.$type === 'string' && 'value' in v && Object.keys(v).length === 2) {
    switch (v.$type) {
      case 'BigInt': {
        const n = Number(v.value);
        return Number.isSafeInteger(n) ? n : v.value;
      }
      case 'Json': return v.value; // the JSON text: Prisma Client Python parses Json fields from a string
      case 'DateTime': case 'Decimal': case 'Bytes': default: return v.value;
    }
  }
  const out = {};
  for (const [k, x] of Object.entries(v)) out[k] = unwrap(x);
  return out;
}

// JSON.parse + JSON.stringify turn the engine's `3.0` into `3`; Prisma Client Python hands raw-query and
// group_by results to the caller as plain dicts, where the native engine gave floats. Float values are
// therefore carried as marked strings and written back as float literals by `stringify()`.
const FLOAT_MARK = '\u0001F';
export function markFloat(v) {
  return typeof v === 'number' && Number.isFinite(v) ? FLOAT_MARK + String(v) : v;
}
export function stringify(obj) {
  return JSON.stringify(obj).replace(/"\\u0001F([^"\\]*)"/g, (_, n) => (/^-?\d+$/.test(n) ? `${n}.0` : n));
}

const RAW_TYPE = {
  int: 'int', bigint: 'bigint', float: 'float', double: 'double', numeric: 'decimal', decimal: 'decimal',
  boolean: 'bool', bool: 'bool', char: 'char', string: 'string', text: 'string', date: 'date', time: 'time',
  datetime: 'datetime', json: 'json', enum: 'enum', bytes: 'bytes', uuid: 'uuid', xml: 'xml', unknown: 'string',
};

function rawCell(type, value) {
  if (value === null || value === undefined) return { prisma__type: 'null', prisma__value: null };
  if (type.endsWith('-array')) {
    const inner = type.slice(0, -6);
    const items = Array.isArray(value) ? value : [value];
    return { prisma__type: 'array', prisma__value: items.map((x) => rawCell(inner, x)) };
  }
  const t = RAW_TYPE[type] || 'string';
  if (t === 'json' && typeof value === 'string') {
    try { return { prisma__type: 'json', prisma__value: JSON.parse(value) }; } catch { /* keep text */ }
  }
  if (t === 'bigint') return { prisma__type: 'bigint', prisma__value: String(value) };
  if (t === 'double' || t === 'float') return { prisma__type: t, prisma__value: markFloat(value) };
  return { prisma__type: t, prisma__value: value };
}

export function rawRows(result) {
  // 5.x engines: {columns, types, rows}; the client of Prisma 4/5.4 expected [{col: {prisma__type, prisma__value}}]
  if (Array.isArray(result)) return result;
  if (!result || !Array.isArray(result.columns)) return result;
  const { columns, types, rows } = result;
  return rows.map((row) => {
    const obj = {};
    columns.forEach((c, i) => { obj[c] = rawCell(types[i] || 'unknown', row[i]); });
    return obj;
  });
}

const AGGREGATES = new Set(['_sum', '_avg', '_min', '_max']);

// group_by / aggregate rows are returned to Python as dicts: keep Float fields floats
function markAggregateFloats(schema, model, value) {
  const fields = schema.models.get(model);
  if (!fields || value === null || typeof value !== 'object') return value;
  const rows = Array.isArray(value) ? value : [value];
  for (const row of rows) {
    if (!row || typeof row !== 'object') continue;
    for (const [k, v] of Object.entries(row)) {
      if (AGGREGATES.has(k) && v && typeof v === 'object') {
        for (const [f, x] of Object.entries(v)) {
          const def = fields.get(f);
          if (k === '_avg' || (def && (def.type === 'Float' || def.type === 'Decimal'))) v[f] = markFloat(x);
        }
      } else {
        const def = fields.get(k);
        if (def && def.type === 'Float' && !def.list) row[k] = markFloat(v);
      }
    }
  }
  return value;
}

export function convertResponse(parsed, part, schema) {
  if (parsed.errors) return { errors: parsed.errors };
  const data = parsed.data || {};
  const keys = Object.keys(data);
  let value = keys.length ? data[keys[0]] : null;
  if (part.kind === 'queryRaw') value = rawRows(value);
  else if (part.kind === 'executeRaw') value = typeof value === 'object' && value !== null ? unwrap(value) : value;
  else {
    value = unwrap(value);
    if (part.json.action === 'groupBy' || part.json.action === 'aggregate') {
      value = markAggregateFloats(schema, part.json.modelName, value);
    }
  }
  return { data: { result: value } };
}

// ---------------------------------------------------------------------------------------------------
// The engine (wasm) and the database pool
async function loadWasm() {
  const base = path.join(HERE, 'node_modules', '@prisma', 'query-engine-wasm', 'postgresql');
  const bg = await import(pathToFileURL(path.join(base, 'query_engine_bg.js')).href);
  const bytes = fs.readFileSync(path.join(base, 'query_engine_bg.wasm'));
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), { './query_engine_bg.js': bg });
  bg.__wbg_set_wasm(instance.exports);
  return bg;
}

const URL_PARAMS_FOR_PRISMA = new Set(['schema', 'connection_limit', 'pool_timeout', 'connect_timeout',
  'socket_timeout', 'pgbouncer', 'statement_cache_size', 'sslaccept', 'sslidentity', 'sslpassword',
  'sslcert', 'sslrootcert', 'application_name', 'options']);

export function poolConfig(url) {
  const u = new URL(url);
  const p = u.searchParams;
  const cfg = { max: 10, connectionTimeoutMillis: 10_000, idleTimeoutMillis: 300_000 };
  if (p.get('connection_limit')) cfg.max = Math.max(1, Math.min(Number(p.get('connection_limit')) || 10, 100));
  if (p.get('pool_timeout')) {
    const s = Number(p.get('pool_timeout'));
    if (s > 0) cfg.connectionTimeoutMillis = s * 1000;
  }
  if (p.get('application_name')) cfg.application_name = p.get('application_name');
  const schema = p.get('schema') || undefined;
  for (const key of [...p.keys()]) if (URL_PARAMS_FOR_PRISMA.has(key)) p.delete(key);
  cfg.connectionString = u.toString();
  return { cfg, schema };
}

// Column types @prisma/adapter-pg 5.17 understands (its `fieldToColumnType`); anything else below
// 10000 makes it fail the whole raw query ("Failed to deserialize column of type 'Unknown'"), e.g.
// LiteLLM's start-up `ARRAY_AGG(viewname)` (name[]). The native engine read those as text.
const ADAPTER_OIDS = new Set([21, 23, 20, 700, 701, 16, 1082, 1083, 1266, 1114, 1184, 1700, 790, 114, 3802, 2950,
  26, 1042, 25, 1043, 1560, 1562, 869, 650, 142, 17, 1005, 1007, 1021, 1022, 1231, 791, 1000, 1002, 1014, 1009,
  1015, 1563, 1561, 1041, 651, 143, 1182, 1183, 1115, 199, 3807, 1001, 2951, 1016, 1028]);
const TEXT_OID = 25;
const TEXT_ARRAY_OID = 1009;
const TIMESTAMP_ARRAY_OID = 1115;

export function patchUnknownColumnTypes(pg, parseArray, arrayOids) {
  const orig = pg.Client.prototype.query;
  if (orig.__standinPatched) return;
  const fix = (res) => {
    if (!res || !Array.isArray(res.fields)) return res;
    res.fields.forEach((field, i) => {
      const oid = field.dataTypeID;
      if (ADAPTER_OIDS.has(oid) || oid >= 10000) return;
      const isArray = oid === 1185 || arrayOids.has(oid);
      field.dataTypeID = oid === 1185 ? TIMESTAMP_ARRAY_OID : (isArray ? TEXT_ARRAY_OID : TEXT_OID);
      for (const row of res.rows || []) {
        if (!Array.isArray(row)) continue;
        const v = row[i];
        if (v === null || v === undefined) continue;
        if (isArray) row[i] = typeof v === 'string' ? parseArray(v, (x) => x) : v.map((x) => (x === null ? x : String(x)));
        else if (typeof v !== 'string') row[i] = v instanceof Date ? v.toISOString() : String(v);
      }
    });
    return res;
  };
  const patched = function query(config, values, callback) {
    if (!(config && typeof config === 'object' && config.rowMode === 'array')) {
      return orig.call(this, config, values, callback);
    }
    // pg-pool calls Client#query with a callback; the adapter on a PoolClient uses the promise.
    if (typeof values === 'function') {
      const cb = values;
      return orig.call(this, config, (err, res) => cb(err, err ? res : fix(res)));
    }
    if (typeof callback === 'function') {
      return orig.call(this, config, values, (err, res) => callback(err, err ? res : fix(res)));
    }
    const out = orig.call(this, config, values);
    return out && typeof out.then === 'function' ? out.then((res) => fix(res)) : out;
  };
  patched.__standinPatched = true;
  pg.Client.prototype.query = patched;
}

function databaseUrl(schema) {
  if (process.env.OVERWRITE_DATASOURCES) {
    const list = JSON.parse(process.env.OVERWRITE_DATASOURCES);
    const ds = Array.isArray(list) ? list[0] : null;
    if (ds && ds.url) return ds.url;
  }
  const url = process.env[schema.datasourceEnv] || schema.datasourceUrl;
  if (!url) throw new Error(`no database URL: ${schema.datasourceEnv} is not set`);
  return url;
}

// ---------------------------------------------------------------------------------------------------
// HTTP
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function send(res, status, body, type = 'application/json') {
  const text = typeof body === 'string' ? body : stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function errorBody(message, code) {
  const ufe = { is_panic: false, message, meta: {} };
  if (code) ufe.error_code = code;
  return { errors: [{ error: message, user_facing_error: ufe }] };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const schemaText = readSchema();
  const schema = parseSchema(schemaText);
  const translator = new Translator(schema);
  const url = databaseUrl(schema);
  const { cfg, schema: pgSchema } = poolConfig(url);

  const pgMod = await import('pg');
  const pg = pgMod.default || pgMod;
  const { PrismaPg } = await import('@prisma/adapter-pg');
  const { bindAdapter } = await import('@prisma/driver-adapter-utils');
  const pool = new pg.Pool(cfg);
  const arrayOids = new Set();
  try {
    const res = await pool.query("SELECT oid::int AS oid FROM pg_type WHERE typcategory = 'A'");
    for (const r of res.rows) arrayOids.add(r.oid);
  } catch (err) {
    log('WARN', `cannot read pg_type (array columns of unusual types will fail): ${err.message}`);
  }
  const { parse: parseArray } = await import('postgres-array');
  patchUnknownColumnTypes(pg, parseArray, arrayOids);
  pool.on('error', (err) => log('WARN', `idle database connection error: ${err.message}`));
  const adapter = bindAdapter(new PrismaPg(pool, pgSchema ? { schema: pgSchema } : undefined));
  const wasm = await loadWasm();
  const logQueries = !!process.env.LOG_QUERIES;
  const engine = new wasm.QueryEngine({ datamodel: schemaText, logLevel: process.env.HARNESS_ENGINE_LOG_LEVEL || 'error', logQueries },
    (line) => { if (line && !line.includes('"level":"TRACE"')) process.stderr.write(`${line}\n`); }, adapter);
  await engine.connect('{}');
  const stats = { queries: 0, errors: 0, txs: 0 };

  const runQuery = async (body, txId) => {
    if (body.batch) {
      const parts = body.batch.map((q) => translator.query(q.query));
      const req = { batch: parts.map((p) => p.json) };
      if (body.transaction) req.transaction = typeof body.transaction === 'object' ? body.transaction : {};
      const parsed = JSON.parse(await engine.query(JSON.stringify(req), '{}', txId));
      if (parsed.errors) return { errors: parsed.errors };
      return { batchResult: (parsed.batchResult || []).map((r, i) => convertResponse(r, parts[i], schema)) };
    }
    const part = translator.query(body.query);
    if (logQueries) log('INFO', 'query', { json: part.json });
    const parsed = JSON.parse(await engine.query(JSON.stringify(part.json), '{}', txId));
    return convertResponse(parsed, part, schema);
  };

  const server = http.createServer(async (req, res) => {
    try {
      const u = new URL(req.url, `http://${HOST}`);
      const body = req.method === 'GET' && u.pathname !== '/metrics' ? '' : await readBody(req);
      if (u.pathname === '/status') return send(res, 200, { status: 'ok' });
      if (u.pathname === '/' && req.method === 'POST') {
        stats.queries++;
        let parsed;
        try { parsed = JSON.parse(body); } catch { return send(res, 400, errorBody('request body is not JSON')); }
        const txId = req.headers['x-transaction-id'] || undefined;
        let out;
        try {
          out = await runQuery(parsed, txId);
        } catch (err) {
          stats.errors++;
          log('ERROR', `query failed: ${err.message}`, { query: (parsed.query || '').slice(0, 2000) });
          return send(res, 200, errorBody(`query-engine stand-in: ${err.message}`));
        }
        if (out.errors) stats.errors++;
        return send(res, 200, out);
      }
      const tx = /^\/transaction\/(start|([^/]+)\/(commit|rollback))$/.exec(u.pathname);
      if (tx && req.method === 'POST') {
        let result;
        if (tx[1] === 'start') {
          stats.txs++;
          const o = body ? JSON.parse(body) : {};
          const input = { max_wait: o.max_wait ?? 2000, timeout: o.timeout ?? 5000 };
          if (o.isolation_level) input.isolation_level = o.isolation_level;
          result = await engine.startTransaction(JSON.stringify(input), '{}');
        } else if (tx[3] === 'commit') {
          result = await engine.commitTransaction(tx[2], '{}');
        } else {
          result = await engine.rollbackTransaction(tx[2], '{}');
        }
        const parsed = JSON.parse(result || '{}');
        if (parsed.error || parsed.user_facing_error) return send(res, 200, { errors: [parsed] });
        return send(res, 200, parsed);
      }
      if (u.pathname === '/metrics') {
        if (u.searchParams.get('format') === 'prometheus') {
          return send(res, 200, `# query-engine stand-in: no Prisma metrics\nstandin_queries_total ${stats.queries}\n`, 'text/plain');
        }
        return send(res, 200, { counters: [
          { key: 'prisma_client_queries_total', labels: {}, value: stats.queries, description: '' },
        ], gauges: [], histograms: [] });
      }
      return send(res, 404, errorBody(`not found: ${req.method} ${u.pathname}`));
    } catch (err) {
      log('ERROR', `request failed: ${err.stack || err.message}`);
      if (!res.headersSent) send(res, 500, errorBody(`query-engine stand-in: ${err.message}`));
    }
  });
  server.keepAliveTimeout = 60_000;

  let stopping = false;
  const shutdown = async (why, code = 0) => {
    if (stopping) return;
    stopping = true;
    log('INFO', `stopping: ${why}`);
    const force = setTimeout(() => process.exit(code), 3000);
    force.unref();
    server.close();
    try { await engine.disconnect('{}'); } catch { /* ignore */ }
    try { await pool.end(); } catch { /* ignore */ }
    process.exit(code);
  };
  // Exit with the parent: poll for re-parenting; watch stdin only when it is a pipe or socket.
  const parent = process.ppid;
  const parentAlive = () => process.ppid === parent && parent !== 1;
  // SIGINT is how Prisma Client Python stops its engine: stop now. SIGTERM usually comes to the whole
  // process group (the harness stopping a proxy): keep serving while the parent finishes its own
  // shutdown (else LiteLLM sees its engine die and spawns a new one), but no longer than 5 s.
  let termAt = 0;
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGHUP', () => shutdown('SIGHUP'));
  process.on('SIGTERM', () => {
    if (!parentAlive() || termAt) { shutdown('SIGTERM'); return; }
    termAt = Date.now();
    const timer = setInterval(() => {
      if (!parentAlive() || Date.now() - termAt > 5000) {
        clearInterval(timer);
        shutdown(parentAlive() ? 'SIGTERM (parent still alive after 5 s)' : 'SIGTERM (parent exited)');
      }
    }, 50);
  });
  setInterval(() => {
    if (process.ppid !== parent) shutdown(`parent ${parent} exited`);
  }, 500).unref();
  try {
    const st = fs.fstatSync(0);
    if (st.isFIFO() || st.isSocket()) {
      process.stdin.on('end', () => shutdown('stdin closed'));
      process.stdin.on('error', () => shutdown('stdin error'));
      process.stdin.resume();
    }
  } catch { /* no stdin */ }

  server.on('error', (err) => { log('ERROR', `cannot listen: ${err.message}`); process.exit(1); });
  server.listen(opts.port, HOST, () => {
    log('INFO', `listening on ${HOST}:${server.address().port}`, { startup_ms: Date.now() - T0, pid: process.pid });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  main().catch((err) => {
    log('ERROR', `failed to start: ${err.stack || err.message}`);
    process.exit(1);
  });
}
