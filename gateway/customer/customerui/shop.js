// The customer's shop: the menu from GET /menu, a cart, the delivery details, and POST /pizza.
// Ordering never orders twice: one Idempotency-Key is made per cart and sent with every attempt for that cart
// (a double click, a retry after a network error), so the API answers a repeat with the first order.
(function () {
  'use strict';

  var P = window.PizzaJoint;
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var CART_KEY = 'pizzajoint.cart'; // sessionStorage: the lines and the key, never the customer's details
  var PLACED_PREFIX = 'pizzajoint.placed.'; // sessionStorage: what the tracking page should say about the order
  var MAX_QTY = 20;
  var MAX_LINES = 50;
  var SIZES = ['S', 'M', 'L'];
  var FIELDS = { 'customer.name': 'name', 'customer.phone': 'phone', 'customer.address': 'address' };
  var LABELS = { name: 'Name', phone: 'Phone', address: 'Address', size: 'Size', quantity: 'Quantity', pizza: 'Pizza' };

  var menu = [];
  var prices = {}; // pizza → size → cents
  var currency = 'EUR';
  var cart = { key: '', lines: [] }; // lines: {pizza, size, quantity}
  var inFlight = false;
  // uncertain is the last attempt that got no clear answer: it may have made an order under cart.key.
  var uncertain = null;

  // ---- Idempotency key ----------------------------------------------------------------------------------

  function newKey() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.prototype.map.call(b, function (x) { return (x < 16 ? '0' : '') + x.toString(16); }).join('');
  }

  // ---- Cart state ---------------------------------------------------------------------------------------

  function saveCart() {
    var ss = P.storage('sessionStorage');
    if (!ss) return;
    try { ss.setItem(CART_KEY, JSON.stringify(cart)); } catch (e) { /* a full or blocked storage only loses the reload */ }
  }

  function restoreCart() {
    var ss = P.storage('sessionStorage');
    if (!ss) return;
    try {
      var c = JSON.parse(ss.getItem(CART_KEY) || 'null');
      if (!c || !Array.isArray(c.lines)) return;
      cart.key = typeof c.key === 'string' ? c.key : '';
      cart.lines = c.lines.filter(function (l) {
        return l && prices[l.pizza] && prices[l.pizza][l.size] !== undefined && validQty(l.quantity);
      }).slice(0, MAX_LINES);
    } catch (e) { /* a corrupt cart is an empty one */ }
  }

  function validQty(q) { return Number.isInteger(q) && q >= 1 && q <= MAX_QTY; }

  function lineCents(l) {
    var p = prices[l.pizza] && prices[l.pizza][l.size];
    return p !== undefined && validQty(l.quantity) ? p * l.quantity : 0;
  }

  function add(pizza, size) {
    var line = cart.lines.find(function (l) { return l.pizza === pizza && l.size === size; });
    if (line) {
      line.quantity = Math.min(MAX_QTY, (validQty(line.quantity) ? line.quantity : 0) + 1);
    } else {
      if (cart.lines.length >= MAX_LINES) { announce('Your cart is full.'); return; }
      cart.lines.push({ pizza: pizza, size: size, quantity: 1 });
    }
    if (!cart.key) cart.key = newKey(); // once per cart: every attempt to order this cart reuses it
    saveCart();
    renderCart();
    announce('Added ' + P.SIZE_NAMES[size].toLowerCase() + ' ' + P.pizzaName(pizza) + '. ' + totalText());
  }

  function announce(text) { $('#announce').textContent = text; }

  function totalCents() { return cart.lines.reduce(function (s, l) { return s + lineCents(l); }, 0); }

  function totalText() { return 'Total ' + P.money(totalCents(), currency) + '.'; }

  // ---- Rendering ----------------------------------------------------------------------------------------

  function renderMenu() {
    var list = $('#menu');
    list.textContent = '';
    menu.forEach(function (p) {
      var item = P.el('li', 'menu-item card');
      item.dataset.pizza = p.name;
      item.appendChild(P.el('h3', 'pizza-name', P.pizzaName(p.name)));
      item.appendChild(P.el('p', 'pizza-desc', p.description));
      var sizes = P.el('div', 'sizes');
      sizes.setAttribute('role', 'group');
      sizes.setAttribute('aria-label', 'Add ' + P.pizzaName(p.name));
      SIZES.forEach(function (z) {
        var cents = p.price_cents && p.price_cents[z];
        if (cents === undefined) return;
        var b = P.el('button', 'btn size-btn');
        b.type = 'button';
        b.dataset.pizza = p.name;
        b.dataset.size = z;
        b.setAttribute('aria-label', 'Add ' + P.SIZE_NAMES[z].toLowerCase() + ' ' + P.pizzaName(p.name) + ', ' + P.money(cents, currency));
        b.appendChild(P.el('span', 'size-name', P.SIZE_NAMES[z]));
        b.appendChild(P.el('span', 'size-price', P.money(cents, currency)));
        sizes.appendChild(b);
      });
      item.appendChild(sizes);
      list.appendChild(item);
    });
    list.removeAttribute('aria-busy');
  }

  function renderCart() {
    var list = $('#cart-lines');
    list.textContent = '';
    cart.lines.forEach(function (l, i) {
      var li = P.el('li', 'cart-line');
      li.dataset.index = String(i);
      var head = P.el('div', 'line-head');
      head.appendChild(P.el('span', 'line-name', P.pizzaName(l.pizza)));
      head.appendChild(P.el('span', 'line-price', P.money(lineCents(l), currency)));
      li.appendChild(head);

      var errId = 'line-error-' + i;
      var controls = P.el('div', 'line-controls');
      var sizeField = P.el('div', 'field-inline');
      var sizeLabel = P.el('label', '', 'Size');
      sizeLabel.htmlFor = 'size-' + i;
      var select = P.el('select');
      select.id = 'size-' + i;
      select.dataset.index = String(i);
      select.dataset.role = 'size';
      select.setAttribute('aria-describedby', errId);
      SIZES.forEach(function (z) {
        var cents = prices[l.pizza] && prices[l.pizza][z];
        if (cents === undefined) return;
        var o = P.el('option', '', P.SIZE_NAMES[z] + ' · ' + P.money(cents, currency));
        o.value = z;
        o.selected = z === l.size;
        select.appendChild(o);
      });
      sizeField.appendChild(sizeLabel);
      sizeField.appendChild(select);

      var qtyField = P.el('div', 'field-inline');
      var qtyLabel = P.el('label', '', 'Quantity');
      qtyLabel.htmlFor = 'qty-' + i;
      var qty = P.el('input', 'qty');
      qty.id = 'qty-' + i;
      qty.type = 'number';
      qty.min = '1';
      qty.max = String(MAX_QTY);
      qty.step = '1';
      qty.inputMode = 'numeric';
      qty.value = String(l.quantity);
      qty.dataset.index = String(i);
      qty.dataset.role = 'quantity';
      qty.setAttribute('aria-describedby', errId);
      qtyField.appendChild(qtyLabel);
      qtyField.appendChild(qty);

      var remove = P.el('button', 'btn btn-ghost remove', 'Remove');
      remove.type = 'button';
      remove.dataset.index = String(i);
      remove.setAttribute('aria-label', 'Remove ' + P.SIZE_NAMES[l.size].toLowerCase() + ' ' + P.pizzaName(l.pizza));
      controls.appendChild(sizeField);
      controls.appendChild(qtyField);
      controls.appendChild(remove);
      li.appendChild(controls);

      var err = P.el('p', 'field-error');
      err.id = errId;
      err.setAttribute('role', 'alert');
      err.hidden = true;
      li.appendChild(err);
      list.appendChild(li);
    });
    $('#cart-empty').hidden = cart.lines.length > 0;
    renderTotal();
  }

  function renderTotal() {
    $('#total').textContent = cart.lines.length ? P.money(totalCents(), currency) : '—';
    var pizzas = cart.lines.reduce(function (n, l) { return n + (validQty(l.quantity) ? l.quantity : 0); }, 0);
    $('#to-cart').hidden = !cart.lines.length;
    $('#to-cart-count').textContent = 'Your order: ' + pizzas + (pizzas === 1 ? ' pizza' : ' pizzas');
    $('#to-cart-total').textContent = P.money(totalCents(), currency);
    var rows = document.querySelectorAll('.cart-line');
    rows.forEach(function (row) {
      var l = cart.lines[Number(row.dataset.index)];
      if (l) $('.line-price', row).textContent = P.money(lineCents(l), currency);
    });
  }

  // ---- Errors -------------------------------------------------------------------------------------------

  function clearErrors() {
    document.querySelectorAll('.field-error').forEach(function (e) { e.hidden = true; e.textContent = ''; });
    document.querySelectorAll('[aria-invalid]').forEach(function (e) { e.removeAttribute('aria-invalid'); });
    setStatus('', '');
  }

  function setStatus(text, kind) {
    var s = $('#form-status');
    s.textContent = text;
    s.dataset.kind = kind || '';
  }

  function sentence(label, msg) {
    // The API's messages read "must be …": after the field's name they make a sentence.
    return /^[a-z]/.test(msg) ? label + ' ' + msg : msg;
  }

  // showFieldError puts msg next to the input it is about; an unknown field's error goes to the form status.
  function showFieldError(field, msg) {
    var input = null;
    var err = null;
    var label = '';
    var m = /^items\[(\d+)\]\.(\w+)$/.exec(field || '');
    if (m) {
      var i = Number(m[1]);
      input = $(m[2] === 'quantity' ? '#qty-' + i : '#size-' + i);
      err = $('#line-error-' + i);
      label = LABELS[m[2]] || 'This pizza';
    } else if (FIELDS[field]) {
      input = $('#' + FIELDS[field]);
      err = $('#' + FIELDS[field] + '-error');
      label = LABELS[FIELDS[field]];
    } else if (field === 'items') {
      err = $('#items-error');
      label = 'Your order';
      input = $('#cart-title');
    }
    if (!err) {
      setStatus(msg, 'error');
      return null;
    }
    err.textContent = sentence(label, msg);
    err.hidden = false;
    if (input && input.tagName !== 'H2') input.setAttribute('aria-invalid', 'true');
    return input;
  }

  // localCheck catches what needs no server: an empty cart or field. Everything else is the API's to judge.
  function localCheck() {
    var first = null;
    function fail(field, msg) {
      var input = showFieldError(field, msg);
      if (!first) first = input;
    }
    if (!cart.lines.length) fail('items', 'is empty: add a pizza from the menu');
    cart.lines.forEach(function (l, i) {
      if (!validQty(l.quantity)) fail('items[' + i + '].quantity', 'must be between 1 and ' + MAX_QTY);
    });
    ['name', 'phone', 'address'].forEach(function (f) {
      if (!$('#' + f).value.trim()) fail('customer.' + f, 'is required');
    });
    if (first) first.focus();
    return !first;
  }

  // ---- Ordering -----------------------------------------------------------------------------------------

  function orderBody() {
    return JSON.stringify({
      customer: { name: $('#name').value.trim(), phone: $('#phone').value.trim(), address: $('#address').value.trim() },
      items: cart.lines.map(function (l) { return { pizza: l.pizza, size: l.size, quantity: l.quantity }; })
    });
  }

  function setBusy(busy) {
    var b = $('#place');
    b.disabled = busy;
    b.setAttribute('aria-busy', busy ? 'true' : 'false');
    $('#order-form').setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  function onSubmit(e) {
    e.preventDefault();
    if (inFlight) return; // a second click while the first is on its way: that attempt stands for both
    clearErrors();
    if (!localCheck()) return;
    if (!cart.key) { cart.key = newKey(); saveCart(); }
    send(cart.key, orderBody());
  }

  function send(key, body) {
    inFlight = true;
    setBusy(true);
    setStatus(uncertain ? 'Trying again…' : 'Placing your order…', 'busy');
    P.request('POST', '/pizza', { headers: { 'Idempotency-Key': key }, body: body }).then(function (res) {
      inFlight = false;
      setBusy(false);
      setStatus('', '');
      if (res.status === 201 && res.data && res.data.id && res.data.tracking_token) {
        placed(res.data, res.headers.get('Idempotent-Replayed') === 'true', !!uncertain);
        return;
      }
      if (res.status === 422 && res.data && res.data.code === 'idempotency_key_reused') {
        keyReused(key, body);
        return;
      }
      if (res.status === 429 || res.status >= 500) {
        maybeOrdered(key, body, 'The shop is busy (' + P.errorText(res) + ').');
        return;
      }
      // A refusal of this body: nothing was stored for it, so the customer fixes the field and orders again
      // (with the same key: an earlier uncertain attempt still counts).
      var input = showFieldError(res.data && res.data.field, P.errorText(res));
      if (input) input.focus();
    }, function () {
      inFlight = false;
      setBusy(false);
      maybeOrdered(key, body, 'No answer from the shop: the connection failed.');
    });
  }

  // maybeOrdered: the attempt may or may not have made an order. Retrying with the same key is safe.
  function maybeOrdered(key, body, why) {
    uncertain = { key: key, body: body };
    $('#place').textContent = 'Retry order';
    setStatus(why + ' Your order may have gone through. Press “Retry order”: it is safe, you will not get two orders.', 'warn');
  }

  // keyReused: an earlier attempt from this cart did make an order, and the cart was changed since. Fetch
  // that order (the same key and its body answer it again) rather than order a second time.
  function keyReused(key, body) {
    if (uncertain && uncertain.key === key && uncertain.body !== body) {
      var first = uncertain.body;
      uncertain = null;
      setStatus('Your earlier attempt went through; fetching that order…', 'busy');
      send(key, first);
      return;
    }
    setStatus('This cart was already ordered. Check your order, or start a new one.', 'warn');
    $('#new-cart').hidden = false;
  }

  function placed(o, replayed, retried) {
    uncertain = null;
    var ss = P.storage('sessionStorage');
    try {
      if (ss) ss.setItem(PLACED_PREFIX + o.id, JSON.stringify({ replayed: replayed, retried: retried }));
    } catch (e) { /* only the note on the next page is lost */ }
    cart = { key: '', lines: [] };
    saveCart();
    var url = '/track/' + encodeURIComponent(o.id);
    // The token goes to localStorage, not the URL. Only when storage is refused (a locked-down browser) does it
    // ride in the fragment, which is never sent to a server; the tracking page removes it at once.
    if (!P.saveToken(o.id, o.tracking_token)) url += '#token=' + encodeURIComponent(o.tracking_token);
    location.assign(url);
  }

  function onNewCart() {
    cart.key = newKey();
    uncertain = null;
    saveCart();
    $('#new-cart').hidden = true;
    $('#place').textContent = 'Order';
    clearErrors();
    $('#place').focus();
  }

  // ---- Events -------------------------------------------------------------------------------------------

  function onMenuClick(e) {
    var b = e.target.closest('button[data-pizza]');
    if (b) add(b.dataset.pizza, b.dataset.size);
  }

  function onCartInput(e) {
    var t = e.target;
    var l = cart.lines[Number(t.dataset.index)];
    if (!l) return;
    if (t.dataset.role === 'size') l.size = t.value;
    if (t.dataset.role === 'quantity') l.quantity = t.value === '' ? NaN : Number(t.value);
    var err = $('#line-error-' + t.dataset.index);
    if (err) { err.hidden = true; err.textContent = ''; }
    t.removeAttribute('aria-invalid');
    saveCart();
    renderTotal();
  }

  function onCartClick(e) {
    var b = e.target.closest('button.remove');
    if (!b) return;
    var i = Number(b.dataset.index);
    var gone = cart.lines.splice(i, 1)[0];
    saveCart();
    renderCart();
    announce('Removed ' + P.pizzaName(gone.pizza) + '. ' + totalText());
    // Keep the keyboard user in the cart: the next line's remove button, else the cart's heading.
    var next = document.querySelectorAll('button.remove')[Math.min(i, cart.lines.length - 1)];
    (next || $('#cart-title')).focus();
  }

  function onFieldInput(e) {
    var err = $('#' + e.target.id + '-error');
    if (err) { err.hidden = true; err.textContent = ''; }
    e.target.removeAttribute('aria-invalid');
  }

  function loadMenu() {
    P.request('GET', '/menu').then(function (res) {
      if (res.status !== 200 || !res.data || !Array.isArray(res.data.pizzas)) throw new Error(P.errorText(res));
      menu = res.data.pizzas;
      currency = res.data.currency || currency;
      prices = {};
      menu.forEach(function (p) { prices[p.name] = p.price_cents || {}; });
      $('#menu-status').textContent = '';
      $('#menu-status').hidden = true;
      renderMenu();
      restoreCart();
      renderCart();
    }).catch(function () {
      $('#menu-status').textContent = 'The menu could not be loaded. Trying again…';
      setTimeout(loadMenu, 3000);
    });
  }

  function init() {
    P.pruneTokens();
    $('#menu').addEventListener('click', onMenuClick);
    $('#cart-lines').addEventListener('input', onCartInput);
    $('#cart-lines').addEventListener('change', onCartInput);
    $('#cart-lines').addEventListener('click', onCartClick);
    ['name', 'phone', 'address'].forEach(function (f) { $('#' + f).addEventListener('input', onFieldInput); });
    $('#order-form').addEventListener('submit', onSubmit);
    $('#new-cart').addEventListener('click', onNewCart);
    // The bar to the cart is for when the cart is out of sight.
    if ('IntersectionObserver' in window) {
      new IntersectionObserver(function (entries) {
        $('#to-cart').classList.toggle('cart-in-view', entries[0].isIntersecting);
      }).observe($('#order-form'));
    }
    renderCart();
    loadMenu();
  }

  document.addEventListener('DOMContentLoaded', init);
})();
