// Shared by the customer's pages (shop.js, track.js). Plain script, no build step: the gateway embeds this
// folder and serves it under /app/ with a strict CSP, so there is no inline code, and page data only ever
// reaches the DOM through textContent.
(function () {
  'use strict';

  var REQUEST_TIMEOUT_MS = 15000;
  // Tracking tokens are kept in localStorage under this prefix, one per order, so a customer who comes back
  // later (another tab, after a restart) still finds the order, and the token never goes in a URL.
  var TOKEN_PREFIX = 'pizzajoint.tracking.';
  var TOKEN_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

  var formatters = {};

  function money(cents, currency) {
    currency = currency || 'EUR';
    var f = formatters[currency];
    if (!f) {
      f = formatters[currency] = new Intl.NumberFormat(document.documentElement.lang || 'en',
        { style: 'currency', currency: currency });
    }
    return f.format((Number(cents) || 0) / 100);
  }

  // el makes an element with a class and text; text goes in as textContent, never as markup.
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  // pizzaName turns a menu name ("quattro-formaggi") into what a customer reads ("Quattro formaggi").
  function pizzaName(name) {
    var s = String(name || '').replace(/-/g, ' ');
    return s.charAt(0).toUpperCase() + s.slice(1);
  }

  var SIZE_NAMES = { S: 'Small', M: 'Medium', L: 'Large' };

  // request answers {status, headers, data} for any HTTP answer, and rejects only when there was none (network
  // error or timeout): the caller must then treat the outcome as unknown.
  function request(method, url, opts) {
    opts = opts || {};
    var ctl = new AbortController();
    var timer = setTimeout(function () { ctl.abort(); }, REQUEST_TIMEOUT_MS);
    var headers = { Accept: 'application/json' };
    Object.keys(opts.headers || {}).forEach(function (k) { headers[k] = opts.headers[k]; });
    var init = { method: method, headers: headers, credentials: 'same-origin', cache: 'no-store', signal: ctl.signal };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = opts.body;
    }
    return fetch(url, init).then(function (resp) {
      return resp.text().then(function (text) {
        clearTimeout(timer);
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { status: resp.status, headers: resp.headers, data: data };
      });
    }, function (err) {
      clearTimeout(timer);
      throw err;
    });
  }

  function errorText(res) {
    if (res.data && typeof res.data.error === 'string') return res.data.error;
    return 'HTTP ' + res.status;
  }

  function storage(kind) {
    try { return window[kind]; } catch (e) { return null; } // blocked storage throws on access
  }

  function saveToken(id, token) {
    var ls = storage('localStorage');
    if (!ls) return false;
    try {
      ls.setItem(TOKEN_PREFIX + id, JSON.stringify({ token: token, saved: Date.now() }));
      return true;
    } catch (e) { return false; }
  }

  function loadToken(id) {
    var ls = storage('localStorage');
    if (!ls) return '';
    try {
      var v = JSON.parse(ls.getItem(TOKEN_PREFIX + id) || 'null');
      return v && typeof v.token === 'string' ? v.token : '';
    } catch (e) { return ''; }
  }

  function forgetToken(id) {
    var ls = storage('localStorage');
    if (ls) ls.removeItem(TOKEN_PREFIX + id);
  }

  // pruneTokens forgets orders older than a month: nobody tracks a pizza that long.
  function pruneTokens() {
    var ls = storage('localStorage');
    if (!ls) return;
    var now = Date.now();
    for (var i = ls.length - 1; i >= 0; i--) {
      var k = ls.key(i);
      if (!k || k.indexOf(TOKEN_PREFIX) !== 0) continue;
      try {
        var v = JSON.parse(ls.getItem(k) || 'null');
        if (!v || !(now - v.saved < TOKEN_MAX_AGE_MS)) ls.removeItem(k);
      } catch (e) { ls.removeItem(k); }
    }
  }

  window.PizzaJoint = {
    money: money, el: el, pizzaName: pizzaName, SIZE_NAMES: SIZE_NAMES, request: request, errorText: errorText,
    storage: storage, saveToken: saveToken, loadToken: loadToken, forgetToken: forgetToken, pruneTokens: pruneTokens
  };
})();
