/**
 * The dashboard's HTTP server (node:http, loopback only):
 *
 *   GET  /                 web/index.html
 *   GET  /dashboard.js     the page's module (plain JS, served as is)
 *   GET  /api/state        session snapshot + the choices (modes, workloads, policies) + defaults
 *   GET  /api/events       Server-Sent Events: state, then the run's recent rounds, then live:
 *                          state, round, heatmap, migration-start, migration-round,
 *                          migration-done, failure (JSON data, one line each)
 *   GET  /api/heatmap      the current heatmap frame (heatmap-frame.ts), 204 before a run
 *   POST /api/run          start a fresh run (run-request.ts)
 *   POST /api/stop         stop the run loop
 *   POST /api/migrate      live-migrate the guest to a loopback receiver
 *   POST /api/walk         explain one translation on the current guest, reference by
 *                          reference (core/explain/walk-explainer.ts; the walk view)
 *
 * Per round the page gets one small JSON event and fetches one binary frame;
 * nothing per guest access ever crosses the wire. POSTs must carry
 * `Content-Type: application/json` (a cross-site form cannot), and the Host
 * header must name the loopback address (no DNS rebinding).
 */
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { MODES } from '../../core/modes/registry.ts';
import { POLICY_NAMES } from '../../core/migration/policy/registry.ts';
import { SYNTHETIC_WORKLOADS } from '../../core/workload/synthetic.ts';
import { GuestSession, SessionStateError, type RunConfig } from './guest-session.ts';
import { sseFrame } from './round-sample.ts';
import { parseMigrateRequest, parseRunRequest, parseWalkRequest, RequestError, runnableModes } from './run-request.ts';

export const WEB_ROOT = fileURLToPath(new URL('../../../web/', import.meta.url));
const STATIC: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/index.html': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
};
const KEEPALIVE_MS = 15_000;
const MAX_BODY_BYTES = 64 * 1024;
/** Event streams open at once: each costs a socket and a write per round; more is a runaway client, not a user. */
export const MAX_SSE_CLIENTS = 32;

export interface DashboardOptions {
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** The run POST /api/run starts when a field is left out (the CLI's flags). */
  readonly defaults: RunConfig;
  /** True when --clean-every was given (then it is kept while the dirty rate is the default one). */
  readonly cleanEveryExplicit?: boolean;
  /** Start a run as soon as the server listens. */
  readonly autostart?: boolean;
}

export interface DashboardServer {
  readonly url: string;
  readonly port: number;
  readonly session: GuestSession;
  close(): Promise<void>;
}

export async function startDashboard(o: DashboardOptions): Promise<DashboardServer> {
  const host = o.host ?? '127.0.0.1';
  const clients = new Set<ServerResponse>();
  const emit = (event: string, data: unknown): void => {
    const frame = sseFrame(event, data);
    for (const c of clients) c.write(frame);
  };
  const session = new GuestSession(emit);

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const hostHeader = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(hostHeader)) return send(res, 403, { error: 'the dashboard answers on its loopback address only' });
    const path = url.pathname;
    if (req.method === 'GET') {
      const st = STATIC[path];
      if (st !== undefined) {
        const body = await readFile(WEB_ROOT + st.file);
        res.writeHead(200, { 'content-type': st.type, 'cache-control': 'no-store' });
        res.end(body);
        return;
      }
      if (path === '/favicon.ico') {
        res.writeHead(204, { 'cache-control': 'max-age=86400' });
        res.end();
        return;
      }
      if (path === '/api/state') {
        return send(res, 200, {
          ...session.snapshot(),
          defaults: o.defaults,
          choices: {
            modes: runnableModes().map((m) => ({ name: m, summary: MODES[m]!.summary })),
            workloads: SYNTHETIC_WORKLOADS,
            policies: POLICY_NAMES,
          },
        });
      }
      if (path === '/api/heatmap') {
        const frame = session.heatmap();
        if (frame === null) {
          res.writeHead(204, { 'cache-control': 'no-store' });
          res.end();
          return;
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': frame.length, 'cache-control': 'no-store' });
        res.end(frame);
        return;
      }
      if (path === '/api/events') {
        if (clients.size >= MAX_SSE_CLIENTS) return send(res, 503, { error: `${MAX_SSE_CLIENTS} event streams are open already; close one` });
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive' });
        res.write('retry: 1000\n\n');
        res.write(sseFrame('state', session.snapshot()));
        // A page that connects mid-run gets the rounds its charts would have shown.
        for (const r of session.recentRounds()) res.write(sseFrame('round', r));
        for (const m of session.recentMigration()) res.write(sseFrame(m.event, m.data));
        clients.add(res);
        req.on('close', () => clients.delete(res));
        return;
      }
      return send(res, 404, { error: `no such page: ${path}` });
    }
    if (req.method === 'POST') {
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        return send(res, 415, { error: 'POST bodies must be application/json' });
      }
      const body = await readJson(req);
      if (path === '/api/run') return send(res, 200, session.start(parseRunRequest(body, o.defaults, o.cleanEveryExplicit === true)));
      if (path === '/api/stop') return send(res, 200, session.stop());
      if (path === '/api/migrate') return send(res, 202, await session.migrate(parseMigrateRequest(body)));
      if (path === '/api/walk') return send(res, 200, session.walk(parseWalkRequest(body)));
      return send(res, 404, { error: `no such operation: ${path}` });
    }
    return send(res, 405, { error: `method ${req.method} not allowed` });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      const err = e as Error;
      const status = err instanceof RequestError ? 400 : err instanceof SessionStateError ? 409 : 500;
      if (!res.headersSent) send(res, status, { error: err.message });
      else res.end();
    });
  });
  const keepalive = setInterval(() => {
    for (const c of clients) c.write(': keep-alive\n\n');
  }, KEEPALIVE_MS);
  keepalive.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  if (o.autostart) session.start(o.defaults);

  return {
    url: `http://${host}:${port}/`,
    port,
    session,
    async close() {
      clearInterval(keepalive);
      await session.close();
      for (const c of clients) c.end();
      clients.clear();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > MAX_BODY_BYTES) throw new RequestError(`request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(c);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (text === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new RequestError('request body is not valid JSON');
  }
}
