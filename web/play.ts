/**
 * The play page: joins an arena room with MoonpatchClient, sends keyboard input and draws the
 * world on a canvas. Served bundled as /play.js by server/net/http.ts.
 *
 * For tests: `window.moonpatch.client` / `.ready`, `body[data-state]` ('idle' | 'connecting' |
 * 'joined' | 'reconnecting' | 'closed'), and #tick / #version hold the latest tick and version.
 */
import { MoonpatchClient } from '../client/client.ts';
import type { Item, PlayerState, Round, World } from '../scripts/arena/world.ts';

const GAME = 'arena';
const DEFAULT_ROOM = 'arena-1';
const ITEM_STYLE: Record<string, { color: string; shape: 'circle' | 'diamond' | 'bolt' }> = {
  coin: { color: '#ffd23f', shape: 'circle' },
  gem: { color: '#3ee0ff', shape: 'diamond' },
  bolt: { color: '#c77dff', shape: 'bolt' },
};
const KEYS: Record<string, [number, number]> = {
  KeyW: [0, -1], ArrowUp: [0, -1], KeyS: [0, 1], ArrowDown: [0, 1],
  KeyA: [-1, 0], ArrowLeft: [-1, 0], KeyD: [1, 0], ArrowRight: [1, 0],
};

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const canvas = $<HTMLCanvasElement>('arena');
const ctx = canvas.getContext('2d')!;
const nameInput = $<HTMLInputElement>('name');
const roomInput = $<HTMLInputElement>('room');
const joinButton = $<HTMLButtonElement>('join');

const params = new URLSearchParams(location.search);
nameInput.value = params.get('name') ?? `player-${Math.floor(Math.random() * 9000 + 1000)}`;
roomInput.value = params.get('room') ?? DEFAULT_ROOM;

let client: MoonpatchClient | null = null;
let joined = false;
/** Drawn positions, eased toward the latest state. */
const drawn = new Map<string, { x: number; y: number }>();

declare global {
  interface Window {
    moonpatch: { readonly client: MoonpatchClient | null; readonly ready: boolean };
  }
}
window.moonpatch = {
  get client() { return client; },
  get ready() { return joined && client !== null && client.connected; },
};

// ---- connection ----

function setState(state: string, text: string, kind: 'ok' | 'warn' | 'bad'): void {
  document.body.dataset.state = state;
  const el = $('conn');
  el.textContent = text;
  el.dataset.kind = kind;
}

function notice(text: string, cls: 'patch' | 'error' | 'info'): void {
  const log = $('log');
  const li = document.createElement('li');
  li.className = cls;
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  log.prepend(li);
  while (log.children.length > 50) log.lastElementChild!.remove();
}

async function join(): Promise<void> {
  if (client) {
    client.leave();
    client = null;
    joined = false;
    drawn.clear();
    setState('idle', 'left', 'warn');
    joinButton.textContent = 'Join';
    return;
  }
  const room = roomInput.value.trim();
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  const c = new MoonpatchClient({ url, room, game: GAME, name: nameInput.value.trim() || 'player', pingIntervalMs: 2000 });
  client = c;
  lastDir = '0,0';
  $('room-name').textContent = room;
  setState('connecting', 'connecting…', 'warn');
  joinButton.disabled = true;
  c.on('version', (v) => notice(`script updated from ${v.from} to ${v.to} at tick ${v.tick}`, 'patch'));
  c.on('error', (e) => notice(`error ${e.code}${e.seq !== undefined ? ` (input ${e.seq})` : ''}: ${e.msg}`, 'error'));
  c.on('disconnect', (d) => {
    setState('reconnecting', `reconnecting (closed ${d.code})`, 'warn');
    notice(`disconnected (${d.code}${d.reason ? ` ${d.reason}` : ''}), reconnecting`, 'info');
  });
  c.on('reconnect', () => {
    setState('joined', 'connected', 'ok');
    notice('reconnected', 'info');
  });
  c.on('pong', (p) => ($('rtt').textContent = `${Math.round(p.rttMs)} ms`));
  try {
    await c.connect();
    if (client !== c) return;
    joined = true;
    setState('joined', `connected as ${c.playerId}`, 'ok');
    joinButton.textContent = 'Leave';
    canvas.focus(); // keys go to the game, not to the button or the inputs
  } catch (err) {
    if (client === c) client = null;
    setState('closed', 'join failed', 'bad');
    notice(`join failed: ${(err as Error).message}`, 'error');
  } finally {
    joinButton.disabled = false;
  }
}

$('join-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void join();
});

// ---- input ----

const held = new Set<string>();
let lastDir = '0,0';

function sendDirection(): void {
  let dx = 0;
  let dy = 0;
  for (const code of held) {
    const d = KEYS[code]!;
    dx += d[0];
    dy += d[1];
  }
  dx = Math.max(-1, Math.min(1, dx));
  dy = Math.max(-1, Math.min(1, dy));
  const key = `${dx},${dy}`;
  if (key === lastDir || !client || !joined) return;
  lastDir = key;
  client.send({ move: [dx, dy] });
}

function isTyping(ev: KeyboardEvent): boolean {
  const t = ev.target as HTMLElement | null;
  return t !== null && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA');
}

window.addEventListener('keydown', (ev) => {
  if (isTyping(ev) || !joined) return;
  if (ev.code in KEYS) {
    ev.preventDefault();
    held.add(ev.code);
    sendDirection();
  } else if (ev.code === 'Space') {
    ev.preventDefault(); // also keeps Space from pressing a focused button
    if (!ev.repeat) client?.send({ boost: true });
  }
});
window.addEventListener('keyup', (ev) => {
  if (held.delete(ev.code)) sendDirection();
});
window.addEventListener('blur', () => {
  held.clear();
  sendDirection();
});

// ---- rendering ----

function resize(): void {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * dpr));
  const h = Math.max(1, Math.round(r.height * dpr));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
}

function drawItem(item: Item, x: number, y: number, s: number): void {
  const style = ITEM_STYLE[item.kind] ?? ITEM_STYLE.coin!;
  const r = 7 * s;
  ctx.fillStyle = style.color;
  ctx.beginPath();
  if (style.shape === 'circle') ctx.arc(x, y, r, 0, Math.PI * 2);
  else if (style.shape === 'diamond') {
    ctx.moveTo(x, y - r * 1.3); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r * 1.3); ctx.lineTo(x - r, y);
  } else {
    ctx.moveTo(x + r * 0.3, y - r * 1.3); ctx.lineTo(x - r * 0.8, y + r * 0.2); ctx.lineTo(x, y + r * 0.2);
    ctx.lineTo(x - r * 0.3, y + r * 1.3); ctx.lineTo(x + r * 0.8, y - r * 0.2); ctx.lineTo(x, y - r * 0.2);
  }
  ctx.closePath();
  ctx.fill();
}

let lastFrame = performance.now();

function frame(t: number): void {
  const dt = Math.min(0.1, (t - lastFrame) / 1000);
  lastFrame = t;
  resize();
  const world = (client?.world ?? {}) as unknown as Partial<World>;
  const arena = world.arena ?? { w: 1000, h: 700 };
  const players = world.players ?? {};
  const items = world.items ?? {};
  const round = world.round;

  const scale = Math.min(canvas.width / arena.w, canvas.height / arena.h);
  const ox = (canvas.width - arena.w * scale) / 2;
  const oy = (canvas.height - arena.h * scale) / 2;
  const s = scale; // canvas pixels per world unit
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#1b2030';
  ctx.fillRect(ox, oy, arena.w * s, arena.h * s);
  ctx.strokeStyle = '#323a52';
  ctx.lineWidth = 2;
  ctx.strokeRect(ox, oy, arena.w * s, arena.h * s);
  ctx.strokeStyle = '#232a3d';
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let gx = 100; gx < arena.w; gx += 100) { ctx.moveTo(ox + gx * s, oy); ctx.lineTo(ox + gx * s, oy + arena.h * s); }
  for (let gy = 100; gy < arena.h; gy += 100) { ctx.moveTo(ox, oy + gy * s); ctx.lineTo(ox + arena.w * s, oy + gy * s); }
  ctx.stroke();

  for (const item of Object.values(items)) drawItem(item, ox + item.x * s, oy + item.y * s, s);

  const ease = 1 - Math.exp(-dt * 15);
  for (const id of drawn.keys()) if (!players[id]) drawn.delete(id);
  ctx.textAlign = 'center';
  ctx.font = `${Math.max(11, 12 * s)}px system-ui, sans-serif`;
  for (const [id, p] of Object.entries(players)) {
    let d = drawn.get(id);
    if (!d || Math.hypot(p.x - d.x, p.y - d.y) > 150) drawn.set(id, (d = { x: p.x, y: p.y }));
    d.x += (p.x - d.x) * ease;
    d.y += (p.y - d.y) * ease;
    const x = ox + d.x * s;
    const y = oy + d.y * s;
    const r = 12 * s;
    ctx.fillStyle = p.color;
    ctx.beginPath();
    ctx.arc(x, y, r, 0, Math.PI * 2);
    ctx.fill();
    if (round?.it === id) {
      ctx.strokeStyle = '#ff3b3b';
      ctx.lineWidth = 3 * s;
      ctx.beginPath();
      ctx.arc(x, y, r + 4 * s, 0, Math.PI * 2);
      ctx.stroke();
    }
    if (id === client?.playerId) {
      ctx.strokeStyle = '#ffffff';
      ctx.lineWidth = 2 * s;
      ctx.beginPath();
      ctx.arc(x, y, r, 0, Math.PI * 2);
      ctx.stroke();
    }
    ctx.fillStyle = id === client?.playerId ? '#ffffff' : '#c9cfdd';
    ctx.fillText(p.name, x, y - r - 8 * s);
  }

  if (!joined) {
    ctx.fillStyle = '#8a91a5';
    ctx.font = `${Math.max(14, 22 * s)}px system-ui, sans-serif`;
    ctx.fillText(client ? 'connecting…' : 'Enter a name and press Join', canvas.width / 2, canvas.height / 2);
  }
  updatePanel(players, round);
  requestAnimationFrame(frame);
}

let panelKey = '';

function updatePanel(players: Record<string, PlayerState>, round: Round | undefined): void {
  $('tick').textContent = client?.tick ? String(client.tick) : '–';
  $('version').textContent = client?.version || '–';
  const ids = Object.keys(players);
  $('players').textContent = client ? String(ids.length) : '–';
  const top = ids.map((id) => ({ id, ...players[id]! })).sort((a, b) => b.score - a.score || a.name.localeCompare(b.name)).slice(0, 10);
  const key = JSON.stringify([top.map((p) => [p.id, p.name, p.score, p.color]), round?.it, round?.number, round?.lastWinner]);
  if (key === panelKey) return; // rebuild the scoreboard only when it changed
  panelKey = key;
  const list = $('scores');
  list.replaceChildren(...top.map((p, i) => {
    const li = document.createElement('li');
    li.classList.toggle('me', p.id === client?.playerId);
    li.classList.toggle('it', p.id === round?.it);
    const cell = (cls: string, text = '') => Object.assign(document.createElement('span'), { className: cls, textContent: text });
    const dot = cell('dot');
    dot.style.background = p.color;
    li.append(cell('rank', `${i + 1}`), dot, cell('name', p.id === client?.playerId ? `${p.name} (you)` : p.name), cell('score', String(p.score)));
    return li;
  }));
  const last = round?.lastWinner ? ` · last winner: ${round.lastWinner.name} (${round.lastWinner.score})` : '';
  $('round').textContent = round ? `Round ${round.number}${last}` : '';
}

requestAnimationFrame(frame);
