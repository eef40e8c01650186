// The customer's tracking page, /track/{id}: the order from GET /pizza/{id}, then its status live from the
// order's event stream. The tracking token comes from localStorage (saved by the shop page), never the URL.
(function () {
  'use strict';

  var P = window.PizzaJoint;
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var PLACED_PREFIX = 'pizzajoint.placed.';
  var STEPS = ['CREATED', 'ACCEPTED', 'BAKING', 'OUT_FOR_DELIVERY', 'DELIVERED'];
  // The lifecycle only moves forward: an event of a lower rank than what is shown is old news.
  var RANK = { CREATED: 0, ACCEPTED: 1, BAKING: 2, OUT_FOR_DELIVERY: 3, DELIVERED: 4, CANCELLED: 4 };
  var TITLES = {
    CREATED: 'We have your order',
    ACCEPTED: 'The kitchen has accepted your order',
    BAKING: 'Your pizza is in the oven',
    OUT_FOR_DELIVERY: 'Your pizza is on its way',
    DELIVERED: 'Delivered. Enjoy!',
    CANCELLED: 'Your order was cancelled'
  };
  var MAX_RECONNECT_MS = 15000;

  var id = '';
  var token = '';
  var current = '';
  var reached = {}; // status → {at: when it was reached ('' if not known yet), firm: the time is the stream's}
  var seen = {}; // event IDs already applied: a replay after a reconnect must not apply them again
  var lastEventId = '';
  var es = null;
  var finished = false; // the order is DELIVERED or CANCELLED
  var streamDone = false; // and the stream has told us so: nothing more will come
  var reconnectDelay = 1000;
  var timer = 0;
  var timeFormat = new Intl.DateTimeFormat(document.documentElement.lang || 'en', { hour: '2-digit', minute: '2-digit' });

  function step(status) { return $('#steps [data-status="' + status + '"]'); }

  function setConn(state, text) {
    var c = $('#conn');
    c.dataset.state = state;
    $('.conn-text', c).textContent = text;
  }

  // reach shows that the order got to status at time at (ISO 8601, or '' when not known yet). Each step has
  // one fixed row: reaching it again only fills in its time, so no step ever shows twice. The event log's
  // times (firm) win over the ones read off the order (its created_at and updated_at).
  function reach(status, at, firm) {
    if (!(status in RANK)) return;
    var prev = reached[status];
    if (prev && (prev.firm || !at || (prev.at && !firm))) return;
    reached[status] = { at: at || '', firm: !!(at && firm) };
    var li = step(status);
    li.dataset.reached = 'true';
    var t = $('.step-time', li);
    if (at) {
      var d = new Date(at);
      if (!isNaN(d)) {
        t.textContent = timeFormat.format(d);
        t.dateTime = d.toISOString();
        t.title = d.toLocaleString();
      }
    }
    // Steps before a reached one were reached too, even before the stream brings their times.
    if (status !== 'CANCELLED') {
      STEPS.slice(0, RANK[status]).forEach(function (s) { if (!(s in reached)) reach(s, '', false); });
    }
    if (!current || RANK[status] > RANK[current]) setCurrent(status);
  }

  function setCurrent(status) {
    if (current) step(current).removeAttribute('aria-current');
    current = status;
    step(status).setAttribute('aria-current', 'step');
    $('#order-view').dataset.status = status;
    $('#status-title').textContent = TITLES[status];
    if (status === 'DELIVERED' || status === 'CANCELLED') finish();
  }

  // finish: the order will not change again. The stream may still be replaying the earlier steps' times.
  function finish() {
    finished = true;
    setConn('done', current === 'CANCELLED' ? 'Cancelled' : 'Done');
  }

  // endStream: the stream sent the last step, and the server ends it now; don't let the browser reopen it.
  function endStream() {
    streamDone = true;
    clearTimeout(timer);
    if (es) { es.close(); es = null; }
  }

  function renderOrder(o) {
    var list = $('#items');
    list.textContent = '';
    (o.items || []).forEach(function (it) {
      var li = P.el('li', 'summary-item');
      li.appendChild(P.el('span', 'qty', it.quantity + ' ×'));
      li.appendChild(P.el('span', 'what', P.pizzaName(it.pizza) + ' (' + (P.SIZE_NAMES[it.size] || it.size).toLowerCase() + ')'));
      li.appendChild(P.el('span', 'price', P.money(it.unit_price_cents * it.quantity)));
      list.appendChild(li);
    });
    $('#order-total').textContent = P.money(o.total_cents);
    var c = o.customer || {};
    $('#deliver-to').textContent = c.name ? 'For ' + c.name + (c.address ? ', ' + c.address : '') : '';
    $('#order-view').removeAttribute('aria-busy');
  }

  function showTokenForm(message) {
    $('#order-view').hidden = true;
    $('#token-view').hidden = false;
    var err = $('#token-error');
    err.textContent = message || '';
    err.hidden = !message;
    $('#token').focus();
  }

  function load() {
    $('#token-view').hidden = true;
    $('#order-view').hidden = false;
    P.request('GET', '/pizza/' + encodeURIComponent(id), { headers: { 'X-Tracking-Token': token } }).then(function (res) {
      if (res.status === 200 && res.data && res.data.id === id) {
        renderOrder(res.data);
        reach('CREATED', res.data.created_at, false);
        reach(res.data.status, res.data.status === 'CREATED' ? res.data.created_at : res.data.updated_at, false);
        // Even a finished order gets its stream once: its history holds the time of every step.
        connect();
        return;
      }
      if (res.status === 401 || res.status === 404) {
        P.forgetToken(id);
        showTokenForm(token ? 'No order matches this tracking token.' : '');
        token = '';
        return;
      }
      throw new Error(P.errorText(res));
    }).catch(function () {
      $('#status-title').textContent = 'Cannot reach the shop. Trying again…';
      timer = setTimeout(load, 3000);
    });
  }

  function connect() {
    if (streamDone) return;
    // EventSource cannot send headers, so the stream alone takes the token in its query; the page's URL never
    // holds it. A stream we reopen ourselves resumes after the last event with the query parameter.
    var url = '/pizza/' + encodeURIComponent(id) + '/events?token=' + encodeURIComponent(token);
    if (lastEventId) url += '&last_event_id=' + encodeURIComponent(lastEventId);
    var source = new EventSource(url);
    es = source;
    if ($('#conn').dataset.state === 'idle') setConn('connecting', 'Connecting…');
    source.addEventListener('open', function () {
      if (source !== es) return;
      reconnectDelay = 1000;
      if (!finished) setConn('live', 'Live');
    });
    source.addEventListener('order', onEvent);
    source.addEventListener('message', onEvent);
    source.addEventListener('error', function () {
      if (source !== es || streamDone) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The browser reconnects by itself and sends Last-Event-ID: the server replays only what we missed.
        if (!finished) setConn('reconnecting', 'Reconnecting…');
        return;
      }
      // CLOSED: the gateway answered with an error (a 503 while it or the kitchen restarts), and the browser
      // gives up on such answers. Reopen it ourselves, backing off.
      source.close();
      es = null;
      if (!finished) setConn('reconnecting', 'Reconnecting…');
      timer = setTimeout(connect, reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, MAX_RECONNECT_MS);
    });
  }

  function onEvent(msg) {
    var ev;
    try { ev = JSON.parse(msg.data); } catch (e) { return; }
    if (!ev || ev.order_id !== id) return;
    var eid = String(ev.event_id || msg.lastEventId || '');
    if (eid) {
      if (seen[eid]) return;
      seen[eid] = true;
    }
    if (msg.lastEventId) lastEventId = msg.lastEventId;
    reach(ev.status, ev.at || '', true);
    if (ev.status === 'DELIVERED' || ev.status === 'CANCELLED') endStream();
  }

  function showPlacedNote() {
    var ss = P.storage('sessionStorage');
    if (!ss) return;
    var note = null;
    try {
      note = JSON.parse(ss.getItem(PLACED_PREFIX + id) || 'null');
      ss.removeItem(PLACED_PREFIX + id); // said once, right after ordering
    } catch (e) { return; }
    if (!note) return;
    var p = $('#placed-note');
    if (note.replayed) {
      p.textContent = 'Your order reached us more than once (a double click or a retry), and we recognised it: ' +
        'this is your one order, nothing was ordered twice.';
      p.dataset.kind = 'replayed';
    } else if (note.retried) {
      p.textContent = 'The retry worked: your order went through once.';
      p.dataset.kind = 'retried';
    } else {
      p.textContent = 'Thank you! Your order is placed.';
      p.dataset.kind = 'placed';
    }
    p.hidden = false;
  }

  function onTokenSubmit(e) {
    e.preventDefault();
    var v = $('#token').value.trim();
    if (!v) { showTokenForm('Enter your tracking token.'); return; }
    token = v;
    $('#token').value = '';
    P.saveToken(id, token);
    load();
  }

  function init() {
    id = decodeURIComponent(location.pathname.replace(/^\/track\//, '').split('/')[0] || '');
    $('#order-ref').textContent = '#' + id.slice(-6);
    // A token in the fragment (only when the shop page could not store it) is stored if possible, and taken
    // out of the address bar and history at once.
    var m = /^#token=(.+)$/.exec(location.hash);
    if (m) {
      token = decodeURIComponent(m[1]);
      P.saveToken(id, token);
      history.replaceState(null, '', location.pathname);
    }
    token = token || P.loadToken(id);
    $('#token-view').addEventListener('submit', onTokenSubmit);
    showPlacedNote();
    if (!token) { showTokenForm(''); return; }
    load();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
