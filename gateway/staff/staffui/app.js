// Staff kitchen board: lists orders by status, follows the gateway's event stream and moves orders forward.
// Plain script, no build step: the gateway embeds this folder and serves it at /staff/ under a strict CSP, so
// everything here is same-origin, relative URLs only, no inline code and no innerHTML with order data.
(function () {
  'use strict';

  var ACTIVE = ['CREATED', 'ACCEPTED', 'BAKING', 'OUT_FOR_DELIVERY'];
  var DONE = ['DELIVERED', 'CANCELLED'];
  var STATUSES = ACTIVE.concat(DONE);
  // The lifecycle only moves forward, so an event that would move an order to a lower rank is stale (it was
  // already in the snapshot we loaded) and is ignored.
  var RANK = { CREATED: 0, ACCEPTED: 1, BAKING: 2, OUT_FOR_DELIVERY: 3, DELIVERED: 4, CANCELLED: 4 };
  var ACTIONS = {
    CREATED: [['ACCEPTED', 'Accept', 'btn-primary'], ['CANCELLED', 'Cancel', 'btn-danger']],
    ACCEPTED: [['BAKING', 'Start baking', 'btn-primary'], ['CANCELLED', 'Cancel', 'btn-danger']],
    BAKING: [['OUT_FOR_DELIVERY', 'Out for delivery', 'btn-primary']],
    OUT_FOR_DELIVERY: [['DELIVERED', 'Delivered', 'btn-primary']]
  };
  var PAGE = 200;
  var PROBE_URL = 'api/orders?status=CREATED&limit=1'; // the cheapest call that tells if the session is good
  var MAX_ACTIVE = 1000; // per column; a kitchen never has this many open orders, a load test might
  var MAX_DONE = 10;
  var DONE_SCAN_PAGES = 10; // the list is oldest first, so the latest finished orders are on the last page
  var REQUEST_TIMEOUT_MS = 10000;
  var RESYNC_AFTER_MS = 60000; // after a disconnection this long, also reload the lists (cheap, and certain)
  var MAX_FETCHING = 50; // more unknown orders than this at once (a long replay): reload the lists instead
  var LATE_MIN = 20;
  var VERY_LATE_MIN = 40;

  var orders = new Map(); // id → order
  var cards = new Map(); // id → card element
  var fetching = new Map(); // id → highest-rank event seen while its order is being fetched
  var es = null;
  var syncing = false;
  var queued = []; // events that arrive while the lists are loading
  var disconnectedAt = 0;
  var resyncOnOpen = false;
  var overflowSyncAt = 0;
  var lastEventId = ''; // the last event seen, to resume a stream that we (not the browser) reopen
  var session = 0; // bumped on every sign-in and sign-out, so late answers from an old session are dropped
  var reconnectTimer = 0;
  var reconnectDelay = 1000;
  var signedIn = false;

  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var columns = {};

  // ---- HTTP -------------------------------------------------------------------------------------------

  function request(method, url, body) {
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, REQUEST_TIMEOUT_MS);
    var init = { method: method, headers: { Accept: 'application/json' }, credentials: 'same-origin',
      cache: 'no-store', signal: ctl.signal };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { status: resp.status, data: data };
      });
    }, function (err) {
      return { status: 0, data: { error: err && err.name === 'AbortError' ? 'the server did not answer in time' : 'cannot reach the server' } };
    }).finally(function () { clearTimeout(timer); });
  }

  function errorText(res) {
    var msg = (res.data && res.data.error) || ('HTTP ' + res.status);
    if (res.data && res.data.request_id) msg += ' (request ' + res.data.request_id + ')';
    return msg;
  }

  // Thrown when any call finds the session gone; it sends the user back to the form.
  function Unauthorized() {}

  function api(method, url, body) {
    return request(method, url, body).then(function (res) {
      if (res.status === 401) {
        showLogin('Your session has ended. Please sign in again.');
        throw new Unauthorized();
      }
      return res;
    });
  }

  // ---- Formatting -------------------------------------------------------------------------------------

  function shortId(id) { return String(id).slice(-6); }

  function money(cents) {
    var n = Math.round(Number(cents) || 0);
    var sign = n < 0 ? '-' : '';
    n = Math.abs(n);
    var frac = n % 100;
    return sign + '€' + Math.floor(n / 100) + '.' + (frac < 10 ? '0' : '') + frac;
  }

  function age(iso, now) {
    var t = Date.parse(iso);
    if (isNaN(t)) return '';
    var s = Math.max(0, Math.floor((now - t) / 1000));
    if (s < 45) return 'just now';
    var m = Math.round(s / 60);
    if (m < 60) return m + ' min ago';
    var h = Math.floor(m / 60);
    return h + ' h ' + (m % 60) + ' min ago';
  }

  function clockText(d) {
    var hh = d.getHours(), mm = d.getMinutes();
    return (hh < 10 ? '0' : '') + hh + ':' + (mm < 10 ? '0' : '') + mm;
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // ---- Notices ----------------------------------------------------------------------------------------

  function notice(text, kind) {
    var box = $('#notices');
    var n = el('div', 'notice notice-' + (kind || 'info'), text);
    box.appendChild(n);
    setTimeout(function () { n.classList.add('notice-out'); }, 4500);
    setTimeout(function () { n.remove(); }, 5000);
    while (box.children.length > 4) box.firstChild.remove();
  }

  // ---- Cards ------------------------------------------------------------------------------------------

  function renderCard(o) {
    var card = el('article', 'card');
    card.dataset.orderId = o.id;
    card.setAttribute('aria-label', 'Order ' + shortId(o.id));

    var head = el('header', 'card-head');
    head.appendChild(el('span', 'card-id', '#' + shortId(o.id)));
    var ageEl = el('time', 'card-age');
    ageEl.dateTime = o.created_at || '';
    head.appendChild(ageEl);
    card.appendChild(head);

    var customer = o.customer || {};
    card.appendChild(el('div', 'card-name', customer.name || '—'));

    var items = el('ul', 'card-items');
    (o.items || []).forEach(function (it) {
      var li = el('li');
      li.appendChild(el('span', 'qty', it.quantity + '×'));
      li.appendChild(document.createTextNode(' ' + it.pizza + ' '));
      li.appendChild(el('span', 'size', it.size));
      items.appendChild(li);
    });
    card.appendChild(items);

    if (customer.address) card.appendChild(el('div', 'card-address', customer.address));
    if (customer.phone) {
      var phone = el('a', 'card-phone', customer.phone);
      phone.href = 'tel:' + String(customer.phone).replace(/[^+0-9]/g, '');
      card.appendChild(phone);
    }

    var foot = el('footer', 'card-foot');
    foot.appendChild(el('span', 'card-total', money(o.total_cents)));
    var actions = el('div', 'card-actions');
    (ACTIONS[o.status] || []).forEach(function (a) {
      var b = el('button', 'btn ' + a[2], a[1]);
      b.type = 'button';
      b.dataset.action = a[0];
      b.dataset.label = a[1];
      actions.appendChild(b);
    });
    foot.appendChild(actions);
    card.appendChild(foot);

    updateAge(card, o, Date.now());
    return card;
  }

  function updateAge(card, o, now) {
    var a = card.querySelector('.card-age');
    // Finished orders show when they finished; open ones how long the customer has been waiting.
    var done = DONE.indexOf(o.status) >= 0;
    a.textContent = age(done ? o.updated_at : o.created_at, now);
    var waited = (now - Date.parse(o.created_at)) / 60000;
    card.classList.toggle('late', !done && waited >= LATE_MIN && waited < VERY_LATE_MIN);
    card.classList.toggle('very-late', !done && waited >= VERY_LATE_MIN);
  }

  function sortKey(o) {
    // Open orders: oldest first, the way tickets are cooked. Finished: most recent first.
    return DONE.indexOf(o.status) >= 0 ? -Date.parse(o.updated_at || o.created_at) : Date.parse(o.created_at);
  }

  function place(card, o) {
    var list = columns[o.status].cards;
    var key = sortKey(o);
    var before = null;
    for (var c = list.firstElementChild; c; c = c.nextElementSibling) {
      var other = orders.get(c.dataset.orderId);
      if (other && other.id !== o.id && sortKey(other) > key) { before = c; break; }
    }
    list.insertBefore(card, before);
    if (DONE.indexOf(o.status) >= 0) {
      while (list.children.length > MAX_DONE) {
        var last = list.lastElementChild;
        orders.delete(last.dataset.orderId);
        cards.delete(last.dataset.orderId);
        last.remove();
      }
    }
  }

  function flash(card, cls) {
    card.classList.remove('flash-new', 'flash-move');
    void card.offsetWidth; // restart the animation when the same card flashes twice
    card.classList.add(cls);
    card.addEventListener('animationend', function done() {
      card.classList.remove(cls);
      card.removeEventListener('animationend', done);
    });
  }

  // upsert shows o on the board: a new card, or the existing one re-rendered in its (maybe new) column.
  function upsert(o, highlight) {
    var prev = orders.get(o.id);
    if (prev && RANK[o.status] < RANK[prev.status]) return; // stale
    orders.set(o.id, o);
    var old = cards.get(o.id);
    var card = renderCard(o);
    cards.set(o.id, card);
    if (old) old.remove();
    place(card, o);
    if (highlight) flash(card, prev ? 'flash-move' : 'flash-new');
    // A new ticket at the bottom of a long column would go unseen; bring it into its column's view.
    if (highlight && !prev) card.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
    updateCounts();
  }

  function updateCounts() {
    STATUSES.forEach(function (s) {
      columns[s].count.textContent = String(columns[s].cards.children.length) + (columns[s].more ? '+' : '');
    });
  }

  function clearBoard() {
    orders.clear();
    cards.clear();
    fetching.clear();
    STATUSES.forEach(function (s) { columns[s].cards.textContent = ''; columns[s].more = false; });
    updateCounts();
  }

  // ---- Loading ----------------------------------------------------------------------------------------

  function listURL(status, after) {
    var q = 'api/orders?status=' + encodeURIComponent(status) + '&limit=' + PAGE;
    return after ? q + '&after=' + encodeURIComponent(after) : q;
  }

  // loadStatus pages through one status. Open columns keep the first MAX_ACTIVE orders; finished ones keep
  // the last MAX_DONE of at most DONE_SCAN_PAGES pages.
  function loadStatus(status) {
    var done = DONE.indexOf(status) >= 0;
    var got = [];
    var pages = 0;
    function next(after) {
      return api('GET', listURL(status, after)).then(function (res) {
        if (res.status !== 200) throw new Error('loading ' + status + ' orders: ' + errorText(res));
        var page = (res.data && res.data.orders) || [];
        got = done ? got.concat(page).slice(-MAX_DONE) : got.concat(page);
        pages++;
        var cursor = res.data && res.data.next_cursor;
        if (cursor && page.length > 0 && (done ? pages < DONE_SCAN_PAGES : got.length < MAX_ACTIVE)) return next(cursor);
        return { status: status, orders: got.slice(0, MAX_ACTIVE), more: !!cursor && !done };
      });
    }
    return next('');
  }

  // sync (re)loads every column from the lists. Events that arrive meanwhile wait and are applied after, so
  // nothing between the snapshot and the stream is lost; the rank check drops the ones already included.
  function sync() {
    if (syncing) return;
    syncing = true;
    queued = [];
    var mine = session;
    var view = $('#board-view');
    view.setAttribute('aria-busy', 'true'); // also tells tests the lists are loaded when it goes
    Promise.all(STATUSES.map(loadStatus)).then(function (results) {
      if (mine !== session) return;
      clearBoard();
      results.forEach(function (r) {
        columns[r.status].more = r.more;
        r.orders.forEach(function (o) { upsert(o, false); });
      });
      syncing = false;
      view.removeAttribute('aria-busy');
      var pending = queued;
      queued = [];
      pending.forEach(onOrderEvent);
    }).catch(function (err) {
      syncing = false;
      view.removeAttribute('aria-busy');
      if (err instanceof Unauthorized || mine !== session) return;
      notice((err.message || 'Could not load the orders') + ' Retrying…', 'error');
      setTimeout(function () { if (mine === session) sync(); }, 5000);
    });
  }

  // ---- Live events ------------------------------------------------------------------------------------

  function setConn(state, text) {
    var c = $('#conn');
    c.dataset.state = state;
    $('.conn-text', c).textContent = text;
  }

  function connect() {
    if (es) es.close();
    clearTimeout(reconnectTimer);
    setConn('connecting', 'Connecting…');
    // The browser resumes by itself (Last-Event-ID header) only within one EventSource; a new one resumes
    // with the query parameter the gateway also accepts.
    var source = new EventSource(lastEventId ? 'api/events?last_event_id=' + encodeURIComponent(lastEventId) : 'api/events');
    es = source;
    source.addEventListener('open', function () {
      setConn('live', 'Live');
      reconnectDelay = 1000;
      if (resyncOnOpen || (disconnectedAt && Date.now() - disconnectedAt > RESYNC_AFTER_MS)) sync();
      resyncOnOpen = false;
      disconnectedAt = 0;
    });
    source.addEventListener('order', handleMessage);
    source.addEventListener('message', handleMessage); // in case a server sends them without an event name
    source.addEventListener('error', function () {
      if (source !== es) return; // an old stream, already replaced
      if (!disconnectedAt) disconnectedAt = Date.now();
      if (source.readyState === EventSource.CONNECTING) {
        // The browser retries by itself and sends Last-Event-ID; the server replays what we missed.
        setConn('reconnecting', 'Reconnecting…');
        return;
      }
      // CLOSED: the server refused the stream (401 when the session ended, 5xx while it restarts). The
      // browser gives up then, so find out which and reconnect ourselves.
      source.close();
      es = null;
      setConn('offline', 'Offline');
      var mine = session;
      request('GET', PROBE_URL).then(function (res) {
        if (!signedIn || mine !== session) return;
        if (res.status === 401) { showLogin('Your session has ended. Please sign in again.'); return; }
        setConn('reconnecting', 'Reconnecting…');
        reconnectTimer = setTimeout(function () {
          resyncOnOpen = !lastEventId; // with nothing to resume from, reload the lists once it opens
          connect();
        }, reconnectDelay);
        reconnectDelay = Math.min(reconnectDelay * 2, 15000);
      });
    });
  }

  function handleMessage(msg) {
    var ev;
    if (msg.lastEventId) lastEventId = msg.lastEventId;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    if (!ev || !ev.order_id || !(ev.status in RANK)) return;
    if (syncing) { queued.push(ev); return; }
    onOrderEvent(ev);
  }

  function onOrderEvent(ev) {
    var o = orders.get(ev.order_id);
    if (o) {
      if (RANK[ev.status] <= RANK[o.status]) return; // already there, or stale
      var moved = Object.assign({}, o, { status: ev.status, updated_at: ev.at || o.updated_at });
      upsert(moved, true);
      return;
    }
    if (fetching.has(ev.order_id)) {
      var seen = fetching.get(ev.order_id);
      if (RANK[ev.status] > RANK[seen.status]) fetching.set(ev.order_id, ev);
      return;
    }
    if (fetching.size >= MAX_FETCHING) {
      // One reload beats hundreds of single fetches; events meanwhile wait in its queue. Not again soon:
      // orders past a column's cap stay unknown, and must not start a loop of reloads.
      if (Date.now() - overflowSyncAt > 30000) {
        overflowSyncAt = Date.now();
        sync();
      }
      return;
    }
    fetching.set(ev.order_id, ev);
    var mine = session;
    api('GET', 'api/orders/' + encodeURIComponent(ev.order_id)).then(function (res) {
      if (mine !== session) return;
      var latest = fetching.get(ev.order_id);
      fetching.delete(ev.order_id);
      if (res.status !== 200 || !res.data || !res.data.id) return;
      var order = res.data;
      if (latest && RANK[latest.status] > RANK[order.status]) {
        order = Object.assign({}, order, { status: latest.status, updated_at: latest.at || order.updated_at });
      }
      upsert(order, true);
    }).catch(function () { fetching.delete(ev.order_id); });
  }

  // ---- Actions ----------------------------------------------------------------------------------------

  var armedCancel = null;

  function onBoardClick(e) {
    var btn = e.target.closest('button[data-action]');
    if (!btn) return;
    var card = btn.closest('[data-order-id]');
    var id = card.dataset.orderId;
    var target = btn.dataset.action;
    // Cancelling cannot be undone: the first tap arms the button, the second within 4 s cancels.
    if (target === 'CANCELLED' && armedCancel !== btn) {
      disarm();
      armedCancel = btn;
      btn.textContent = 'Confirm cancel';
      btn.classList.add('armed');
      btn.dataset.timer = String(setTimeout(disarm, 4000));
      return;
    }
    disarm();
    var buttons = card.querySelectorAll('button');
    buttons.forEach(function (b) { b.disabled = true; });
    card.setAttribute('aria-busy', 'true');
    api('POST', 'api/orders/' + encodeURIComponent(id) + '/status', { status: target }).then(function (res) {
      if (res.status === 200 && res.data && res.data.id) {
        upsert(res.data, true);
        var moved = cards.get(id);
        if (moved) moved.scrollIntoView({ block: 'nearest', behavior: 'smooth' }); // follow your own ticket
        return;
      }
      if (res.status === 409) {
        notice('Order #' + shortId(id) + ' was already moved by someone else.', 'warn');
        refresh(id);
      } else {
        notice('Could not update order #' + shortId(id) + ': ' + errorText(res), 'error');
      }
      buttons.forEach(function (b) { b.disabled = false; });
      card.removeAttribute('aria-busy');
    }).catch(function () {});
  }

  function disarm() {
    if (!armedCancel) return;
    clearTimeout(Number(armedCancel.dataset.timer));
    armedCancel.textContent = armedCancel.dataset.label;
    armedCancel.classList.remove('armed');
    armedCancel = null;
  }

  // refresh reloads one order after a conflict; the event stream would bring it too, this is just quicker.
  function refresh(id) {
    api('GET', 'api/orders/' + encodeURIComponent(id)).then(function (res) {
      if (res.status === 200 && res.data && res.data.id) upsert(res.data, true);
    }).catch(function () {});
  }

  // ---- Views ------------------------------------------------------------------------------------------

  function show(view) {
    ['login-view', 'board-view', 'loading-view'].forEach(function (v) { $('#' + v).hidden = v !== view; });
    $('#signout').hidden = view !== 'board-view';
  }

  function showLogin(message) {
    signedIn = false;
    session++;
    if (es) { es.close(); es = null; }
    clearTimeout(reconnectTimer);
    clearBoard();
    setConn('idle', 'Not connected');
    var err = $('#login-error');
    err.hidden = !message;
    err.textContent = message || '';
    $('#login-submit').disabled = false;
    show('login-view');
    $('#token').focus();
  }

  function startBoard() {
    signedIn = true;
    session++;
    lastEventId = ''; // a new session starts from now; the lists give the current state
    disconnectedAt = 0;
    resyncOnOpen = false;
    syncing = false;
    show('board-view');
    // Stream first, then the lists: events that arrive before the lists are queued by sync, not lost.
    connect();
    sync();
  }

  function onLogin(e) {
    e.preventDefault();
    var input = $('#token');
    var token = input.value.trim();
    var err = $('#login-error');
    if (!token) {
      err.textContent = 'Enter your staff token.';
      err.hidden = false;
      return;
    }
    $('#login-submit').disabled = true;
    request('POST', 'login', { token: token }).then(function (res) {
      $('#login-submit').disabled = false;
      if (res.status === 204 || res.status === 200) {
        input.value = ''; // the session cookie is all we need from here on
        err.hidden = true;
        startBoard();
        return;
      }
      err.textContent = res.status === 401 ? errorText(res) : 'Sign-in failed: ' + errorText(res);
      err.hidden = false;
      input.select();
    });
  }

  function onSignOut() {
    request('POST', 'logout').then(function (res) {
      if (res.status !== 204 && res.status !== 200 && res.status !== 401) {
        notice('Sign-out failed: ' + errorText(res), 'error');
        return;
      }
      showLogin('');
    });
  }

  // checkSession decides the first view: a 200 means the session cookie is still good.
  function checkSession() {
    request('GET', PROBE_URL).then(function (res) {
      if (res.status === 200) { startBoard(); return; }
      if (res.status === 401) { showLogin(''); return; }
      showLogin('Cannot check the session: ' + errorText(res) + '. Retrying…');
      setTimeout(function () { if (!signedIn && !$('#token').value) checkSession(); }, 5000);
    });
  }

  function tick() {
    var now = Date.now();
    $('#clock').textContent = clockText(new Date(now));
    cards.forEach(function (card, id) {
      var o = orders.get(id);
      if (o) updateAge(card, o, now);
    });
  }

  function init() {
    STATUSES.forEach(function (s) {
      var col = $('[data-status="' + s + '"]');
      columns[s] = { el: col, cards: $('[data-cards]', col), count: $('[data-count]', col), more: false };
    });
    $('#login-form').addEventListener('submit', onLogin);
    $('#signout').addEventListener('click', onSignOut);
    $('#board-view').addEventListener('click', onBoardClick);
    tick();
    setInterval(tick, 5000);
    checkSession();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
