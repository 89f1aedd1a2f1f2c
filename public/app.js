// The demo page, and the reference browser client: nothing but EventSource and fetch.
//
// EventSource does the hard part by itself: when a stream drops it reconnects after the
// server's `retry:` delay and sends the last `id:` it saw as the Last-Event-ID header, so the
// gateway can resume where this page stopped. The page only listens and draws.

// One connection for all channels (`GET /events?room=…&ticker=…`): a browser opens at most six
// HTTP/1.1 connections per origin. false opens one per channel instead (`GET /events/:room`,
// `GET /tickers/:symbol/events`); the page works the same either way. A sharded gateway (README,
// "Sharded mode") refuses one stream for a room and a symbol of different shard groups (409):
// the page then opens one per channel, which the load balancer routes each to its group.
const ONE_CONNECTION = true;

// `name`: who this page is in the room's presence when the gateway runs without auth (with auth
// on the gateway ignores it and lists the token's name).
function streamUrls(room, symbol, name) {
  if (ONE_CONNECTION && state.separateFor !== channelsKey()) return [`/events?${new URLSearchParams({ room, ticker: symbol, name })}`];
  return [`/events/${encodeURIComponent(room)}?${new URLSearchParams({ name })}`, `/tickers/${encodeURIComponent(symbol)}/events`];
}

const WINDOW_SPAN_MS = { '5m': 5 * 60_000, '1h': 60 * 60_000, '24h': 24 * 60 * 60_000 };
const RECONNECT_AFTER_FAILURE_MS = 3000;
/**
 * The room's recent history on load: the stream starts this far back (`?since=`), replays the
 * room's messages, edits and deletions from there, then goes live. It resumes like any stream: every
 * event carries its position as `id:`, which EventSource sends back as Last-Event-ID on
 * reconnect (it wins over `since`), so nothing is shown twice or missed.
 */
const CHAT_HISTORY_MS = 5 * 60_000;
/** How long "resumed" stays on the badge after a reconnect, before it says "live" again. */
const RESUMED_BADGE_MS = 3000;

const $ = (id) => document.getElementById(id);
const ui = {
  badge: $('badge'), roomForm: $('room-form'), room: $('room'), user: $('user'), messages: $('messages'),
  presenceCount: $('presence-count'), presenceList: $('presence-list'),
  postForm: $('post-form'), text: $('text'), chatNotice: $('chat-notice'), tickerForm: $('ticker-form'),
  symbol: $('symbol'), window: $('window'), lastPrice: $('last-price'), currency: $('currency'),
  chart: $('chart'), axes: $('axes'), line: $('line'), chartMin: $('chart-min'), chartMax: $('chart-max'), chartCount: $('chart-count'),
};

const params = new URLSearchParams(location.search);
const state = {
  room: params.get('room') ?? 'lobby',
  symbol: params.get('symbol') ?? 'BTC',
  window: params.get('window') ?? '5m',
  /** Message ids this browser posted: only those get edit and delete buttons. */
  ownIds: new Set(JSON.parse(localStorage.getItem('ownMessageIds') ?? '[]')),
  chart: { bucketMs: 1000, points: [], loading: true, pendingLive: [] },
  /** The time of the price shown as the last one. */
  lastPriceTs: 0,
  sources: [],
  /** Who is in the room (README, "Presence"): members by sub (or name, when self-named), and the anonymous count. */
  presence: { members: new Map(), anonymous: 0 },
  /** The name the streams were opened with. */
  streamName: '',
  /** The room and symbol (channelsKey) whose combined stream a sharded gateway refused: one stream each for them. */
  separateFor: '',
};
const channelsKey = () => `${state.room}\n${state.symbol}`;
ui.room.value = state.room;
ui.symbol.value = state.symbol;
ui.window.value = state.window;
ui.user.value = localStorage.getItem('user') ?? `guest-${Math.random().toString(36).slice(2, 6)}`;

// ---- connection badge -------------------------------------------------------------------

/** Worst first: the badge shows the worst state among the open streams. */
const BADGE_ORDER = ['disconnected', 'reconnecting', 'connecting', 'catching-up', 'resumed', 'live'];

function renderBadge() {
  const worst = state.sources.map((source) => source.badge).sort((a, b) => BADGE_ORDER.indexOf(a) - BADGE_ORDER.indexOf(b))[0];
  const badge = worst ?? 'connecting';
  ui.badge.dataset.state = badge;
  ui.badge.textContent = badge.replace('-', ' ');
}

// ---- streams ----------------------------------------------------------------------------

function connect() {
  for (const source of state.sources) source.close();
  state.streamName = ui.user.value;
  state.sources = streamUrls(state.room, state.symbol, state.streamName).map(openStream);
  renderBadge();
}

function openStream(url) {
  const stream = { badge: 'connecting', events: null, retryTimer: 0, opened: false, closed: false, lastEventId: '', resumedUntil: 0, badgeTimer: 0, deferred: 'live' };
  const since = Date.now() - CHAT_HISTORY_MS;
  const listen = () => {
    // A new EventSource cannot send Last-Event-ID itself: hand the position over in the query.
    const start = stream.lastEventId ? { lastEventId: stream.lastEventId } : { since: String(since) };
    const address = `${url}${url.includes('?') ? '&' : '?'}${new URLSearchParams(start)}`;
    const events = new EventSource(address);
    stream.events = events;
    events.onopen = () => {
      // A reopen after a drop: the browser sent Last-Event-ID, the gateway resumes from it.
      if (stream.opened) {
        stream.resumedUntil = Date.now() + RESUMED_BADGE_MS;
        stream.deferred = 'live';
        setStreamBadge(stream, 'resumed');
        clearTimeout(stream.badgeTimer);
        stream.badgeTimer = setTimeout(() => {
          stream.resumedUntil = 0;
          setStreamBadge(stream, stream.deferred);
        }, RESUMED_BADGE_MS);
      } else setStreamBadge(stream, 'live');
      stream.opened = true;
    };
    events.onerror = () => {
      stream.resumedUntil = 0;
      clearTimeout(stream.badgeTimer);
      if (events.readyState === EventSource.CONNECTING) {
        stream.badge = stream.opened ? 'reconnecting' : 'connecting';
      } else {
        // The browser gave up (an HTTP error such as 503): start over after a pause.
        stream.badge = 'disconnected';
        clearTimeout(stream.retryTimer);
        if (!stream.opened && state.sources.length === 1 && state.separateFor !== channelsKey()) void askWhy(address);
        else stream.retryTimer = setTimeout(() => stream.closed || listen(), RECONNECT_AFTER_FAILURE_MS);
      }
      renderBadge();
    };
    const track = (handle) => (e) => {
      stream.lastEventId = e.lastEventId;
      handle(JSON.parse(e.data));
    };
    events.addEventListener('message', track(onChatMessage));
    events.addEventListener('edit', track(onChatEdit));
    events.addEventListener('delete', track(onChatDelete));
    events.addEventListener('price_update', track(onPriceUpdate));
    events.addEventListener('lag', () => setStreamBadge(stream, 'catching-up'));
    events.addEventListener('live', () => setStreamBadge(stream, 'live'));
    events.addEventListener('reset', (e) => onReset(JSON.parse(e.data), stream));
    // Presence frames carry no id: they never move the resume position.
    events.addEventListener('presence', (e) => onPresence(JSON.parse(e.data)));
  };
  /**
   * The combined stream failed before it ever opened, and EventSource does not say why: the
   * same request with fetch does. 409 is a sharded gateway saying its channels live on
   * different shard groups: one stream per channel instead. Anything else: retry as usual.
   */
  const askWhy = async (address) => {
    const controller = new AbortController();
    const status = await fetch(address, { headers: { accept: 'text/event-stream' }, signal: controller.signal }).then(
      (response) => response.status,
      () => 0,
    );
    // A 200 is a stream opened meanwhile: not wanted here, EventSource opens its own.
    controller.abort();
    if (stream.closed) return;
    if (status === 409) {
      state.separateFor = channelsKey();
      connect();
    } else stream.retryTimer = setTimeout(() => stream.closed || listen(), RECONNECT_AFTER_FAILURE_MS);
  };
  stream.close = () => {
    stream.closed = true;
    clearTimeout(stream.retryTimer);
    clearTimeout(stream.badgeTimer);
    stream.events?.close();
  };
  listen();
  return stream;
}

/**
 * A stream's badge. "resumed" stays RESUMED_BADGE_MS, long enough to be seen: what comes meanwhile
 * (the replay's `lag` and `live`) is shown after it. Losing the connection shows at once (onerror).
 */
function setStreamBadge(stream, badge) {
  if (badge !== 'resumed' && Date.now() < stream.resumedUntil) {
    stream.deferred = badge;
    return;
  }
  stream.badge = badge;
  renderBadge();
}

/** The gateway could not start the stream where asked: events may have been missed. */
function onReset({ reason }, stream) {
  // The first open asks for the last minutes of chat; a gateway that holds less says
  // since-unavailable and starts live: nothing was missed since the page loaded.
  if (reason === 'since-unavailable' && !stream.lastEventId) return;
  showNotice(`Some events may be missing (${reason}).`);
  loadHistory();
}

// ---- chat -------------------------------------------------------------------------------

// ---- presence ---------------------------------------------------------------------------

const memberKey = (member) => (member.verified === false ? `~${member.name}` : member.sub);

/** A snapshot replaces the list; a delta adds and removes (as sets: a join may repeat the snapshot). */
function onPresence(update) {
  if (update.room !== state.room) return;
  const { members } = state.presence;
  if (update.snapshot) {
    members.clear();
    for (const member of update.members) members.set(memberKey(member), member);
  } else {
    for (const member of update.joined) members.set(memberKey(member), member);
    for (const member of update.left) members.delete(memberKey(member));
  }
  state.presence.anonymous = update.anonymous;
  renderPresence();
}

function renderPresence() {
  const { members, anonymous } = state.presence;
  ui.presenceCount.textContent = `${members.size} here${anonymous > 0 ? ` (+${anonymous} anonymous)` : ''}:`;
  ui.presenceList.replaceChildren(
    ...[...members.values()].map((member) => {
      const item = document.createElement('li');
      item.textContent = member.name;
      if (member.verified === false) item.title = 'self-named (not verified)';
      return item;
    }),
  );
}

function onChatMessage(message) {
  if (message.room !== state.room) return;
  // Keyed by message id: a message delivered twice is still shown once.
  if (ui.messages.querySelector(`li[data-id="${CSS.escape(message.id)}"]`)) return;
  const item = document.createElement('li');
  item.dataset.id = message.id;
  const time = document.createElement('time');
  time.dateTime = new Date(message.ts).toISOString();
  time.textContent = new Date(message.ts).toLocaleTimeString();
  const user = document.createElement('span');
  user.className = 'user';
  user.textContent = message.user;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = message.text;
  item.append(time, user, text);
  if (state.ownIds.has(message.id)) addOwnButtons(item);
  const atBottom = ui.messages.scrollTop + ui.messages.clientHeight >= ui.messages.scrollHeight - 4;
  ui.messages.append(item);
  if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function addOwnButtons(item) {
  const edit = document.createElement('button');
  edit.type = 'button';
  edit.className = 'edit';
  edit.textContent = 'edit';
  edit.addEventListener('click', () => editMessage(item));
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.className = 'delete';
  remove.textContent = 'delete';
  remove.addEventListener('click', () => deleteMessage(item.dataset.id));
  item.append(edit, remove);
}

/**
 * An edit: the message's new text, marked "edited" (hover: when). Edits come after their
 * message in the stream (one room, one partition); one of a message not shown (deleted, or
 * older than the history loaded) has nothing to change.
 */
function onChatEdit({ room, id, text, ts }) {
  if (room !== state.room) return;
  const item = ui.messages.querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (!item) return;
  const shown = item.querySelector('.text');
  shown.textContent = text;
  let mark = item.querySelector('.edited');
  if (!mark) {
    mark = document.createElement('span');
    mark.className = 'edited';
    mark.textContent = 'edited';
    shown.after(mark);
  }
  mark.title = `edited at ${new Date(ts).toLocaleTimeString()}`;
}

function onChatDelete({ room, id }) {
  if (room !== state.room) return;
  ui.messages.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
}

async function postMessage(text) {
  const response = await fetch(`/rooms/${encodeURIComponent(state.room)}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user: ui.user.value, text }),
  });
  const body = await response.json();
  if (response.status !== 202) throw new Error(body.message);
  // The stream may have delivered it before this answer: give it its buttons now.
  rememberOwn(body.id);
  const shown = ui.messages.querySelector(`li[data-id="${CSS.escape(body.id)}"]`);
  if (shown && !shown.querySelector('button')) addOwnButtons(shown);
}

async function editMessage(item) {
  const current = item.querySelector('.text').textContent;
  const text = prompt('Edit your message', current);
  if (text === null || text === '' || text === current) return;
  // The page shows the new text when the `edit` event arrives, as every other page does.
  const response = await fetch(`/rooms/${encodeURIComponent(state.room)}/messages/${encodeURIComponent(item.dataset.id)}`, {
    method: 'PATCH',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ text }),
  });
  if (response.status !== 202) showNotice(`Edit failed: ${(await response.json()).message}`);
}

async function deleteMessage(id) {
  const response = await fetch(`/rooms/${encodeURIComponent(state.room)}/messages/${encodeURIComponent(id)}`, { method: 'DELETE' });
  if (response.status !== 202) showNotice(`Delete failed: ${(await response.json()).message}`);
}

function rememberOwn(id) {
  state.ownIds.add(id);
  localStorage.setItem('ownMessageIds', JSON.stringify([...state.ownIds].slice(-200)));
}

function showNotice(text) {
  ui.chatNotice.textContent = text;
  ui.chatNotice.hidden = false;
}

// ---- ticker chart -----------------------------------------------------------------------

async function loadHistory() {
  const chart = { bucketMs: 1000, points: [], loading: true, pendingLive: [] };
  state.chart = chart;
  renderChart();
  const response = await fetch(`/tickers/${encodeURIComponent(state.symbol)}/history?window=${state.window}`);
  if (state.chart !== chart) return;
  const history = await response.json();
  chart.bucketMs = history.bucketMs;
  chart.loading = false;
  for (const point of history.points) addPoint(chart, point);
  // Live prices that arrived while the history was on its way continue the line.
  for (const point of chart.pendingLive) addPoint(chart, point);
  chart.pendingLive = [];
  if (history.currency) ui.currency.textContent = history.currency;
  const last = chart.points.at(-1);
  if (last && last.ts >= state.lastPriceTs) {
    state.lastPriceTs = last.ts;
    ui.lastPrice.textContent = formatPrice(last.price);
  }
  renderChart();
}

function onPriceUpdate(update) {
  if (update.ticker !== state.symbol) return;
  // The stream replays the last minutes on load (CHAT_HISTORY_MS): only a newer price is "last".
  if (update.ts >= state.lastPriceTs) {
    state.lastPriceTs = update.ts;
    ui.lastPrice.textContent = formatPrice(update.price);
    ui.currency.textContent = update.currency;
  }
  const point = { ts: update.ts, price: update.price };
  if (state.chart.loading) state.chart.pendingLive.push(point);
  else addPoint(state.chart, point);
  renderChart();
}

/** The same downsampling as the gateway's history: the last price per bucket. */
function addPoint(chart, point) {
  const last = chart.points.at(-1);
  const bucket = Math.floor(point.ts / chart.bucketMs);
  if (last && Math.floor(last.ts / chart.bucketMs) === bucket) chart.points[chart.points.length - 1] = point;
  else if (!last || point.ts > last.ts) chart.points.push(point);
}

/** Time-axis tick spacing per window: about five labels across. */
const TIME_TICK_MS = { '5m': 60_000, '1h': 10 * 60_000, '24h': 4 * 60 * 60_000 };
const SVG = 'http://www.w3.org/2000/svg';
/** Room around the plot for the axis labels, in CSS pixels. */
const MARGIN = { left: 64, right: 12, top: 10, bottom: 24 };

/** About `count` round values (1, 2 or 5 × 10^n apart) covering [low, high]. */
function niceTicks(low, high, count) {
  const raw = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= raw) ?? raw;
  const ticks = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) ticks.push(value);
  return ticks;
}

function svgElement(name, attributes, text) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

/**
 * Draws the line with a price axis (left) and a time axis (bottom, local time). The drawing
 * uses the chart's size in CSS pixels as its coordinates, so labels are never stretched.
 */
function renderChart() {
  const span = WINDOW_SPAN_MS[state.window];
  const now = Date.now();
  const chart = state.chart;
  chart.points = chart.points.filter((point) => point.ts > now - span);
  const prices = chart.points.map((point) => point.price);
  const low = Math.min(...prices);
  const high = Math.max(...prices);
  const pad = (high - low) * 0.1 || high * 0.01 || 1;
  const width = Math.max(ui.chart.clientWidth, 200);
  const height = Math.max(ui.chart.clientHeight, 120);
  ui.chart.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const plot = { left: MARGIN.left, top: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom };
  const from = now - span;
  const x = (ts) => plot.left + ((ts - from) / span) * plot.width;
  const [bottom, top] = prices.length ? [low - pad, high + pad] : [0, 1];
  const y = (price) => plot.top + plot.height - ((price - bottom) / (top - bottom)) * plot.height;

  const axes = [];
  axes.push(svgElement('rect', { class: 'plot', x: plot.left, y: plot.top, width: plot.width, height: plot.height }));
  if (prices.length) {
    for (const price of niceTicks(bottom, top, 5)) {
      axes.push(svgElement('line', { class: 'grid', x1: plot.left, x2: plot.left + plot.width, y1: y(price), y2: y(price) }));
      axes.push(svgElement('text', { class: 'tick price-tick', x: plot.left - 6, y: y(price), 'text-anchor': 'end', 'dominant-baseline': 'middle' }, formatPrice(price)));
    }
  }
  const step = TIME_TICK_MS[state.window];
  const showSeconds = state.window === '5m' && step < 60_000;
  // A label needs about 64 px: on a narrow chart every other grid line gets one.
  const labelEvery = (step / span) * plot.width < 64 ? 2 : 1;
  for (let ts = Math.ceil(from / step) * step, index = 0; ts <= now; ts += step, index++) {
    axes.push(svgElement('line', { class: 'grid', x1: x(ts), x2: x(ts), y1: plot.top, y2: plot.top + plot.height }));
    if ((Math.round(ts / step) % labelEvery) !== 0) continue;
    const label = new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', ...(showSeconds ? { second: '2-digit' } : {}) });
    // Near the right edge the label ends at its line instead of running out of the chart.
    const anchor = x(ts) > width - 36 ? 'end' : 'middle';
    axes.push(svgElement('text', { class: 'tick time-tick', x: x(ts), y: plot.top + plot.height + 16, 'text-anchor': anchor }, label));
  }
  ui.axes.replaceChildren(...axes);

  ui.line.setAttribute('points', chart.points.map((point) => `${x(point.ts).toFixed(1)},${y(point.price).toFixed(1)}`).join(' '));
  ui.chart.dataset.points = String(chart.points.length);
  ui.chartCount.textContent = String(chart.points.length);
  ui.chartMin.textContent = prices.length ? formatPrice(low) : '–';
  ui.chartMax.textContent = prices.length ? formatPrice(high) : '–';
}

function formatPrice(price) {
  return price.toLocaleString(undefined, { maximumFractionDigits: price < 1 ? 6 : 2 });
}

// ---- forms ------------------------------------------------------------------------------

function updateAddress() {
  history.replaceState(null, '', `?${new URLSearchParams({ room: state.room, symbol: state.symbol, window: state.window })}`);
}

ui.roomForm.addEventListener('submit', (e) => {
  e.preventDefault();
  localStorage.setItem('user', ui.user.value);
  if (ui.room.value === state.room && ui.user.value === state.streamName) return;
  // A new name: the streams reopen under it (the room's presence shows it).
  if (ui.room.value === state.room) return connect();
  state.room = ui.room.value;
  state.presence = { members: new Map(), anonymous: 0 };
  renderPresence();
  ui.messages.replaceChildren();
  ui.chatNotice.hidden = true;
  updateAddress();
  connect();
});

ui.postForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const text = ui.text.value;
  ui.text.value = '';
  try {
    await postMessage(text);
  } catch (error) {
    ui.text.value = text;
    showNotice(`Not sent: ${error.message}`);
  }
});

ui.tickerForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const symbolChanged = ui.symbol.value !== state.symbol;
  state.symbol = ui.symbol.value;
  state.window = ui.window.value;
  ui.lastPrice.textContent = '–';
  ui.currency.textContent = '';
  state.lastPriceTs = 0;
  updateAddress();
  if (symbolChanged) connect();
  loadHistory();
});

// Slide the chart's time axis even when no price arrives, and redraw at the new size.
setInterval(renderChart, 5000);
new ResizeObserver(() => renderChart()).observe(ui.chart);

connect();
loadHistory();
