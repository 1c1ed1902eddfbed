/**
 * The play page: joins an arena room with MoonpatchClient, sends keyboard input and draws the
 * world on a canvas. Served bundled as /play.js by server/net/http.ts.
 *
 * For tests: `window.moonpatch.client` / `.ready`, `body[data-state]` ('idle' | 'connecting' |
 * 'joined' | 'reconnecting' | 'closed'), and #tick / #version hold the latest tick and version.
 */
import { FINAL_CLOSES, MoonpatchClient } from '../client/client.ts';
import type { Item, PlayerState, Round, World } from '../scripts/arena/world.ts';

const GAME = 'arena';
const DEFAULT_ROOM = 'arena-1';
const ITEM_COLORS = { coin: '#ffd23f', gem: '#3ee0ff', bolt: '#c77dff' };
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
  $('rtt').textContent = 'measuring…';
  setState('connecting', 'connecting…', 'warn');
  joinButton.disabled = true;
  c.on('version', (v) => notice(`script updated from ${v.from} to ${v.to} at tick ${v.tick}`, 'patch'));
  c.on('error', (e) => notice(`error ${e.code}${e.seq !== undefined ? ` (input ${e.seq})` : ''}: ${e.msg}`, 'error'));
  c.on('disconnect', (d) => {
    const final = FINAL_CLOSES.has(d.code); // the client does not retry these
    setState(final ? 'closed' : 'reconnecting', final ? `closed (${d.code})` : `reconnecting (closed ${d.code})`, final ? 'bad' : 'warn');
    notice(`disconnected (${d.code}${d.reason ? ` ${d.reason}` : ''})`, 'info');
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

/** Send the held keys' direction, only when it changed (the game keeps the last one). */
function sendDirection(): void {
  let dx = 0;
  let dy = 0;
  for (const code of held) (dx += KEYS[code]![0]), (dy += KEYS[code]![1]);
  dx = Math.max(-1, Math.min(1, dx)); // opposite keys cancel, same-axis keys do not add up
  dy = Math.max(-1, Math.min(1, dy));
  if (`${dx},${dy}` === lastDir || !client || !joined) return;
  lastDir = `${dx},${dy}`;
  client.send({ move: [dx, dy] });
}

window.addEventListener('keydown', (ev) => {
  const typing = ev.target instanceof HTMLInputElement;
  if (typing || !joined) return;
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

/** Keep the canvas' pixel size equal to its CSS size times the device pixel ratio. */
function resize(): void {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(r.width * dpr));
  const h = Math.max(1, Math.round(r.height * dpr));
  if (canvas.width !== w) canvas.width = w;
  if (canvas.height !== h) canvas.height = h;
}

function circle(x: number, y: number, r: number, fill: string | null, stroke?: string, width = 1): void {
  ctx.beginPath();
  ctx.arc(x, y, r, 0, Math.PI * 2);
  if (fill) (ctx.fillStyle = fill), ctx.fill();
  if (stroke) (ctx.strokeStyle = stroke), (ctx.lineWidth = width), ctx.stroke();
}

/** A five-pointed star: the item patch 002-stars adds (live patches may add kinds). */
function drawStar(x: number, y: number, r: number): void {
  ctx.beginPath();
  for (let i = 0; i < 10; i++) {
    const a = -Math.PI / 2 + (i * Math.PI) / 5;
    const rr = i % 2 === 0 ? r * 1.4 : r * 0.6;
    ctx.lineTo(x + Math.cos(a) * rr, y + Math.sin(a) * rr);
  }
  ctx.closePath();
  ctx.fillStyle = '#ff8fd8';
  ctx.fill();
}

/** Coin: gold disc; gem: cyan diamond; bolt: purple lightning; star: pink star; anything else: a grey ring. */
function drawItem(item: Item, x: number, y: number, s: number): void {
  const r = 7 * s;
  const kind = item.kind as string;
  if (kind === 'star') return drawStar(x, y, r);
  if (kind !== 'coin' && kind !== 'gem' && kind !== 'bolt') return circle(x, y, r, null, '#9aa0a6', 2 * s);
  if (item.kind === 'gem' || item.kind === 'bolt') {
    const pts = item.kind === 'gem' ? [0, -1.3, 1, 0, 0, 1.3, -1, 0] : [0.3, -1.3, -0.8, 0.2, 0, 0.2, -0.3, 1.3, 0.8, -0.2, 0, -0.2];
    ctx.beginPath();
    for (let i = 0; i < pts.length; i += 2) ctx.lineTo(x + pts[i]! * r, y + pts[i + 1]! * r);
    ctx.closePath();
    ctx.fillStyle = ITEM_COLORS[item.kind];
    ctx.fill();
  } else circle(x, y, r, ITEM_COLORS.coin, '#a8860c', 1.5 * s);
}

let lastFrame = performance.now();

function frame(t: number): void {
  const dt = Math.min(0.1, (t - lastFrame) / 1000);
  lastFrame = t;
  resize();
  const world = (client?.world ?? {}) as unknown as Partial<World>;
  const { w, h } = world.arena ?? { w: 1000, h: 700 };
  const players = world.players ?? {};
  const round = world.round;
  const me = client?.playerId;

  // s = canvas pixels per world unit; the arena is centred in the canvas.
  const s = Math.min(canvas.width / w, canvas.height / h);
  const ox = (canvas.width - w * s) / 2;
  const oy = (canvas.height - h * s) / 2;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.fillStyle = '#1b2030';
  ctx.fillRect(ox, oy, w * s, h * s);
  ctx.beginPath();
  for (let gx = 100; gx < w; gx += 100) ctx.moveTo(ox + gx * s, oy), ctx.lineTo(ox + gx * s, oy + h * s);
  for (let gy = 100; gy < h; gy += 100) ctx.moveTo(ox, oy + gy * s), ctx.lineTo(ox + w * s, oy + gy * s);
  ctx.strokeStyle = '#252c40';
  ctx.lineWidth = 1;
  ctx.stroke();
  ctx.strokeStyle = '#3a4360';
  ctx.lineWidth = 2;
  ctx.strokeRect(ox, oy, w * s, h * s);

  for (const item of Object.values(world.items ?? {})) drawItem(item, ox + item.x * s, oy + item.y * s, s);

  // Ease drawn positions toward the latest state; jump when a player teleports (respawn, join).
  const ease = 1 - Math.exp(-dt * 15);
  for (const id of drawn.keys()) if (!players[id]) drawn.delete(id);
  ctx.textAlign = 'center';
  ctx.font = `${Math.round(Math.max(12, 14 * s))}px system-ui, sans-serif`;
  for (const [id, p] of Object.entries(players)) {
    let d = drawn.get(id);
    if (!d || Math.hypot(p.x - d.x, p.y - d.y) > 150) drawn.set(id, (d = { x: p.x, y: p.y }));
    d.x += (p.x - d.x) * ease;
    d.y += (p.y - d.y) * ease;
    const x = ox + d.x * s;
    const y = oy + d.y * s;
    const r = 12 * s;
    circle(x, y, r, p.color, id === me ? '#ffffff' : '#0b0d13', (id === me ? 2.5 : 1.5) * s);
    if (round?.it === id) circle(x, y, r + 5 * s, null, '#ff3b3b', 3 * s);
    ctx.fillStyle = id === me ? '#ffffff' : '#c9cfdd';
    ctx.fillText(p.name, x, y - r - 9 * s);
  }

  if (!joined) {
    ctx.fillStyle = '#8a91a5';
    ctx.font = `${Math.round(Math.max(14, 22 * s))}px system-ui, sans-serif`;
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
