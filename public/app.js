// The demo page, and the reference browser client: nothing but EventSource and fetch.
//
// EventSource does the hard part by itself: when a stream drops it reconnects after the
// server's `retry:` delay and sends the last `id:` it saw as the Last-Event-ID header, so the
// gateway can resume where this page stopped. The page only listens and draws.

// One connection for all channels (`GET /events?room=…&ticker=…`): a browser opens at most six
// HTTP/1.1 connections per origin. false opens one per channel instead (`GET /events/:room`,
// `GET /tickers/:symbol/events`); the page works the same either way.
const ONE_CONNECTION = true;

function streamUrls(room, symbol) {
  if (ONE_CONNECTION) return [`/events?${new URLSearchParams({ room, ticker: symbol })}`];
  return [`/events/${encodeURIComponent(room)}`, `/tickers/${encodeURIComponent(symbol)}/events`];
}

const WINDOW_SPAN_MS = { '5m': 5 * 60_000, '1h': 60 * 60_000, '24h': 24 * 60 * 60_000 };
const RECONNECT_AFTER_FAILURE_MS = 3000;

const $ = (id) => document.getElementById(id);
const ui = {
  badge: $('badge'), roomForm: $('room-form'), room: $('room'), user: $('user'), messages: $('messages'),
  postForm: $('post-form'), text: $('text'), chatNotice: $('chat-notice'), tickerForm: $('ticker-form'),
  symbol: $('symbol'), window: $('window'), lastPrice: $('last-price'), currency: $('currency'),
  chart: $('chart'), line: $('line'), chartMin: $('chart-min'), chartMax: $('chart-max'), chartCount: $('chart-count'),
};

const params = new URLSearchParams(location.search);
const state = {
  room: params.get('room') ?? 'lobby',
  symbol: params.get('symbol') ?? 'BTC',
  window: params.get('window') ?? '5m',
  /** Message ids this browser posted: only those get a delete button. */
  ownIds: new Set(JSON.parse(localStorage.getItem('ownMessageIds') ?? '[]')),
  chart: { bucketMs: 1000, points: [], loading: true, pendingLive: [] },
  sources: [],
};
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
  state.sources = streamUrls(state.room, state.symbol).map(openStream);
  renderBadge();
}

function openStream(url) {
  const stream = { badge: 'connecting', events: null, retryTimer: 0, opened: false, closed: false, lastEventId: '' };
  const listen = () => {
    // A new EventSource cannot send Last-Event-ID itself: hand the position over in the query.
    const resumeUrl = stream.lastEventId ? `${url}${url.includes('?') ? '&' : '?'}${new URLSearchParams({ lastEventId: stream.lastEventId })}` : url;
    const events = new EventSource(resumeUrl);
    stream.events = events;
    events.onopen = () => {
      // A reopen after a drop: the browser sent Last-Event-ID, the gateway resumes from it.
      stream.badge = stream.opened ? 'resumed' : 'live';
      stream.opened = true;
      renderBadge();
    };
    events.onerror = () => {
      if (events.readyState === EventSource.CONNECTING) {
        stream.badge = stream.opened ? 'reconnecting' : 'connecting';
      } else {
        // The browser gave up (an HTTP error such as 503): start over after a pause.
        stream.badge = 'disconnected';
        clearTimeout(stream.retryTimer);
        stream.retryTimer = setTimeout(() => stream.closed || listen(), RECONNECT_AFTER_FAILURE_MS);
      }
      renderBadge();
    };
    const track = (handle) => (e) => {
      stream.lastEventId = e.lastEventId;
      handle(JSON.parse(e.data));
    };
    events.addEventListener('message', track(onChatMessage));
    events.addEventListener('delete', track(onChatDelete));
    events.addEventListener('price_update', track(onPriceUpdate));
    events.addEventListener('lag', () => setStreamBadge(stream, 'catching-up'));
    events.addEventListener('live', () => setStreamBadge(stream, 'live'));
    events.addEventListener('reset', (e) => onReset(JSON.parse(e.data)));
  };
  stream.close = () => {
    stream.closed = true;
    clearTimeout(stream.retryTimer);
    stream.events?.close();
  };
  listen();
  return stream;
}

function setStreamBadge(stream, badge) {
  stream.badge = badge;
  renderBadge();
}

/** The gateway could not resume from our last id: events may have been missed. */
function onReset({ reason }) {
  showNotice(`Some events may be missing (${reason}).`);
  loadHistory();
}

// ---- chat -------------------------------------------------------------------------------

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
  if (state.ownIds.has(message.id)) addDeleteButton(item);
  const atBottom = ui.messages.scrollTop + ui.messages.clientHeight >= ui.messages.scrollHeight - 4;
  ui.messages.append(item);
  if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function addDeleteButton(item) {
  const remove = document.createElement('button');
  remove.type = 'button';
  remove.textContent = 'delete';
  remove.addEventListener('click', () => deleteMessage(item.dataset.id));
  item.append(remove);
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
  // The stream may have delivered it before this answer: give it its delete button now.
  rememberOwn(body.id);
  const shown = ui.messages.querySelector(`li[data-id="${CSS.escape(body.id)}"]`);
  if (shown && !shown.querySelector('button')) addDeleteButton(shown);
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
  if (last) ui.lastPrice.textContent = formatPrice(last.price);
  renderChart();
}

function onPriceUpdate(update) {
  if (update.ticker !== state.symbol) return;
  ui.lastPrice.textContent = formatPrice(update.price);
  ui.currency.textContent = update.currency;
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

function renderChart() {
  const span = WINDOW_SPAN_MS[state.window];
  const now = Date.now();
  const chart = state.chart;
  chart.points = chart.points.filter((point) => point.ts > now - span);
  const prices = chart.points.map((point) => point.price);
  const low = Math.min(...prices);
  const high = Math.max(...prices);
  const pad = (high - low) * 0.1 || high * 0.01 || 1;
  const { width, height } = ui.chart.viewBox.baseVal;
  ui.line.setAttribute('points', chart.points
    .map((point) => {
      const x = ((point.ts - (now - span)) / span) * width;
      const y = height - ((point.price - (low - pad)) / (high - low + 2 * pad)) * height;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    })
    .join(' '));
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
  if (ui.room.value === state.room) return;
  state.room = ui.room.value;
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
  updateAddress();
  if (symbolChanged) connect();
  loadHistory();
});

// Slide the chart's time axis even when no price arrives.
setInterval(renderChart, 5000);

connect();
loadHistory();
