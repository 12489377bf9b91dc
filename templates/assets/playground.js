/* n2g-site: the neuron-page playground. The reader's text is tokenized in the browser with the model's own
 * tokenizer (Hugging Face tokenizers.js, vendored in assets/vendor/), and the neuron's graph predicts each
 * token's normalised activation with the rule of n2g/predict.py's Predictor:
 *
 *   a pattern (activating token, then earlier tokens, null = any one token) matches at position t when every
 *   key equals the normalised token at t, t-1, ...; the prediction at t is the end value of the longest
 *   matching pattern (ties: the largest), else 0.
 *
 * Patterns are tried shortest first in the graph's order, exactly as the Python predictor does, so the two
 * give identical values (tests/test_playground.py compares them on random token sequences). Token keys come
 * from the site's tokenizer data (render/playground.py), not from a JavaScript copy of normalise().
 * Strings reach the page through textContent only.
 */
(function () {
  "use strict";
  var TOKENIZER_LIB = "assets/vendor/tokenizers.js";
  var TOKENIZER_DATA = "playground/tokenizer";
  var FIRES = 0.5;  // "fires" = predicted activation >= this share of the max, unless the page says otherwise

  function unpackTrie(packed) {
    // render/playground.py pack_trie: base64 of LEB128 varints, per node distance, key + 1 (0: any token), end
    // in thousandths (0: no end).
    var bin = atob(packed.p), at = 0, d = [], k = [], e = [];
    function next() {
      var value = 0, shift = 0, byte;
      do {
        byte = bin.charCodeAt(at++);
        value += (byte & 0x7f) * Math.pow(2, shift);
        shift += 7;
      } while (byte & 0x80);
      return value;
    }
    while (at < bin.length) {
      d.push(next());
      var key = next();
      k.push(key === 0 ? null : key - 1);
      e.push(next());
    }
    return { d: d, k: k, e: e, s: 1000, t: packed.t };
  }

  function compile(graph, keys) {
    if (graph.p !== undefined) graph = unpackTrie(graph);
    // Every complete match, read off the trie (render/playground.py): the keys from the activating token back.
    // graph.d: how far back each node's parent is (0: an activating token); graph.e: end values, times graph.s
    // when it is given (exact: 773 / 1000 is the double 0.773, as in Python).
    var pats = [], scale = graph.s || 1;
    graph.e.forEach(function (end, i) {
      if (end === null || (end === 0 && scale !== 1)) return;  // with graph.s, 0 stands for "no end" too
      var path = [];
      for (var at = i; ; at -= graph.d[at]) {
        var k = graph.k[at];  // null (any token), a token id standing for its normalised text, or the text
        path.push(typeof k === "number" ? keys[k] : k);
        if (graph.d[at] === 0) break;
      }
      pats.push({ value: scale === 1 ? end : end / scale, keys: path.reverse(), order: pats.length });
    });
    pats.sort(function (a, b) { return a.keys.length - b.keys.length || a.order - b.order; });
    return function predict(ids) {
      var n = ids.length, pred = new Array(n), best = new Array(n), key = new Array(n), t, j;
      for (t = 0; t < n; t++) {
        pred[t] = 0;
        best[t] = -1;
        key[t] = ids[t] >= 0 && ids[t] < keys.length ? keys[ids[t]] : undefined;
      }
      pats.forEach(function (p) {
        var depth = p.keys.length - 1;
        for (t = depth; t < n; t++) {
          for (j = 0; j <= depth; j++) {
            var want = p.keys[j];
            if (want !== null && key[t - j] !== want) break;
          }
          if (j <= depth) continue;
          if (depth > best[t]) { pred[t] = p.value; best[t] = depth; }
          else if (p.value > pred[t]) pred[t] = p.value;
        }
      });
      return pred;
    };
  }

  var libPromise = null, dataPromise = null;
  function loadLib() {
    if (!libPromise) {
      libPromise = new Promise(function (resolve, reject) {
        if (window.N2GTokenizers) { resolve(window.N2GTokenizers); return; }
        var tag = document.createElement("script");
        tag.src = new URL(TOKENIZER_LIB, window.n2gRoot).href;
        tag.onload = function () { resolve(window.N2GTokenizers); };
        tag.onerror = function () { reject(new Error(TOKENIZER_LIB + " could not be loaded")); };
        document.head.appendChild(tag);
      });
    }
    return libPromise;
  }
  // The site's tokenizer data is gzip in base64 (render/playground.py write_tokenizer_data): a data script
  // works from file:// too, where fetch() is refused, and DecompressionStream inflates it.
  function inflate(b64) {
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser cannot unpack gzip (DecompressionStream); try a current one"));
    }
    var bin = atob(b64), bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Response(stream).text().then(JSON.parse);
  }
  // The inverse of render/playground.py pack(): the tokenizer.json (a BPE model's vocabulary and merges rebuilt
  // from its pieces and the merges' two numbers each), and every token's text and key.
  function unpack(data) {
    var tokenizer = data.tokenizer, pieces = data.pieces || [];
    if (data.merges) {
      var vocab = Object.create(null), merges = new Array(data.merges.length / 2), made = 0, i;
      for (i = 0; i < pieces.length; i++) vocab[pieces[i]] = i;  // no prototype: "__proto__" is a piece too
      for (i = 0; i < merges.length; i++) {
        made += data.merges[2 * i];
        var piece = pieces[made], cut = data.merges[2 * i + 1];
        merges[i] = [piece.slice(0, cut), piece.slice(cut)];
      }
      var model = Object.assign({}, tokenizer.model, { vocab: vocab, merges: merges });
      tokenizer = Object.assign({}, tokenizer, { model: model });
    }
    var texts = data.vocab.map(function (t, id) { return t === 0 ? pieces[id].split("\u2581").join(" ") : t; });
    var keys = data.keys.map(function (k, id) { return k === 0 ? texts[id] : k; });
    return { tokenizer: tokenizer, config: data.config, vocab: texts, keys: keys,
             bos: typeof data.bos === "number" ? data.bos : null };
  }
  // {tokenizer, keys, vocab, bos}: the model's tokenizer, token id -> normalised key, token id -> text, and
  // the doc-start token id (null: none).
  function loadTokenizer() {
    if (!dataPromise) {
      var data = window.n2gLoad(TOKENIZER_DATA).then(function (packed) { return inflate(packed.gz); }).then(unpack);
      dataPromise = Promise.all([loadLib(), data]).then(function (got) {
        var lib = got[0], tk = got[1];
        return { tokenizer: new lib.Tokenizer(tk.tokenizer, tk.config), keys: tk.keys, vocab: tk.vocab, bos: tk.bos };
      });
      dataPromise.catch(function () { dataPromise = null; });  // a failed load is tried again on the next input
    }
    return dataPromise;
  }

  var VISIBLE = { "\n": "\u23ce", "\t": "\u21e5", "\r": "\u21b5" };
  function visible(text) {
    return text.replace(/[\n\t\r]/g, function (c) { return VISIBLE[c]; });
  }

  // The playground's heading, text box, output and status, built here: a neuron page carries only its data
  // (templates/neuron_body.html.j2), since without JavaScript there is no playground to show.
  function build(box) {
    var h = document.createElement("h2");
    h.id = "playground";
    h.textContent = "Try the graph on your own text";
    var input = document.createElement("textarea");
    input.className = "n2g-pg-input";
    input.rows = 3;
    input.spellcheck = false;
    input.setAttribute("aria-label", "Text to run this neuron's graph on");
    input.placeholder = "Type or paste text: it is tokenized with the model's tokenizer in your browser and " +
      "the graph predicts each token's activation";
    var out = document.createElement("div");
    out.className = "n2g-tokens n2g-pg-out";
    out.setAttribute("aria-live", "polite");
    var status = document.createElement("p");
    status.className = "n2g-note n2g-pg-status";
    status.textContent = "The graph runs in your browser, no server involved; the tokenizer (a few MB) loads on " +
      "first use. Highlights are the graph's predicted activation \u00f7 the neuron's max, not the model's.";
    box.parentNode.insertBefore(h, box);
    box.prepend(input, out, status);
  }

  function setup(box) {
    if (!box.querySelector(".n2g-pg-input")) build(box);
    var input = box.querySelector(".n2g-pg-input");
    var out = box.querySelector(".n2g-pg-out");
    var status = box.querySelector(".n2g-pg-status");
    var inline = JSON.parse(box.querySelector(".n2g-pg-graph").textContent);
    // A huge graph's patterns are a data script next to its page ({"src": name}: render/layer.py).
    var graphReady = null, graph = null, fires = FIRES;
    function loadGraph() {
      if (!graphReady) graphReady = inline.src ? window.n2gLoad(inline.src) : Promise.resolve(inline);
      return graphReady;
    }
    var predict = null, timer = null, seq = 0;
    input.addEventListener("keydown", function (e) { e.stopPropagation(); });  // not Material's shortcuts
    function run() {
      var mine = ++seq, text = input.value;
      if (!text) { out.replaceChildren(); status.textContent = ""; return; }
      if (!predict) status.textContent = "Loading the tokenizer\u2026";
      Promise.all([loadTokenizer(), loadGraph()]).then(function (got) {
        var tk = got[0];
        if (mine !== seq) return;
        if (!predict) {
          graph = got[1];
          fires = typeof graph.t === "number" ? graph.t : FIRES;  // the evaluation's firing threshold
          predict = compile(graph, tk.keys);
        }
        var ids = tk.tokenizer.encode(text, { add_special_tokens: false }).ids;
        // The reader's text is a document: it starts after the doc-start token, as mined text did (not shown).
        var values = tk.bos === null ? predict(ids) : predict([tk.bos].concat(ids)).slice(1);
        var frag = document.createDocumentFragment(), firing = [];
        ids.forEach(function (id, t) {
          var v = values[t];
          var span = document.createElement("span");
          var level = Math.round(10 * Math.min(Math.max(v, 0), 1));
          if (level) span.className = "a" + level;
          span.title = "graph " + v.toFixed(2);
          span.dataset.value = String(v);
          span.textContent = visible(tk.vocab[id] !== undefined ? tk.vocab[id] : "<" + id + ">");
          frag.appendChild(span);
          if (v >= fires) firing.push(span.textContent);
        });
        out.replaceChildren(frag);
        status.textContent = ids.length + " token" + (ids.length === 1 ? "" : "s") + " \u00b7 " +
          (firing.length ? "the graph predicts firing (\u2265 " + fires + " \u00d7 max) on: " + firing.join(" \u00b7 ")
                         : "the graph predicts no firing on this text");
      }).catch(function (err) {
        if (mine !== seq) return;
        status.textContent = "The playground is unavailable (" + err.message + ").";
      });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(run, 150); });
    // A large vocabulary (Gemma 3: 262,144 tokens, ~3 s to unpack and build) starts loading when the reader
    // enters the box, not when they stop typing; an error shows on the first run().
    input.addEventListener("focus", function () { loadTokenizer().catch(function () {}); }, { once: true });
  }

  // For tests: the predictor and the loaded tokenizer.
  window.n2gPlayground = { compile: compile, tokenizer: loadTokenizer, inflate: inflate, unpack: unpack };

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll(".n2g-playground"), setup);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
