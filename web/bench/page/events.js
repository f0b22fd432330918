// A small stand-in for node's `events` module, so `pouchdb-browser`'s ESM build (which imports
// `events` and expects a bundler to supply it) loads in the bench page through an import map,
// without a bundler and without adding a dependency.
//
// Only what PouchDB calls: on/addListener, once, emit, removeListener/off, removeAllListeners,
// listeners, listenerCount (also static), setMaxListeners/getMaxListeners. The methods are
// plain enumerable prototype properties, as in node's function-style EventEmitter: PouchDB
// copies them onto its constructor with `Object.keys(EE.prototype)`. As in node, an `error`
// event nobody listens to is thrown.

export default function EventEmitter() {
  this._events = Object.create(null);
}

function events(ee) {
  if (!ee._events) ee._events = Object.create(null);
  return ee._events;
}

EventEmitter.prototype.on = function on(type, listener) {
  const all = events(this);
  (all[type] ||= []).push(listener);
  return this;
};

EventEmitter.prototype.addListener = EventEmitter.prototype.on;

EventEmitter.prototype.once = function once(type, listener) {
  const self = this;
  function wrapper(...args) {
    self.removeListener(type, wrapper);
    return listener.apply(self, args);
  }
  wrapper.listener = listener;
  return this.on(type, wrapper);
};

EventEmitter.prototype.removeListener = function removeListener(type, listener) {
  const list = events(this)[type];
  if (!list) return this;
  const at = list.findIndex((l) => l === listener || l.listener === listener);
  if (at >= 0) list.splice(at, 1);
  if (list.length === 0) delete events(this)[type];
  return this;
};

EventEmitter.prototype.off = EventEmitter.prototype.removeListener;

EventEmitter.prototype.removeAllListeners = function removeAllListeners(type) {
  if (type === undefined) this._events = Object.create(null);
  else delete events(this)[type];
  return this;
};

EventEmitter.prototype.emit = function emit(type, ...args) {
  const list = events(this)[type];
  if (!list || list.length === 0) {
    if (type === "error") throw args[0] instanceof Error ? args[0] : new Error(`unhandled error event: ${args[0]}`);
    return false;
  }
  for (const listener of [...list]) listener.apply(this, args);
  return true;
};

EventEmitter.prototype.listeners = function listeners(type) {
  return (events(this)[type] || []).map((l) => l.listener || l);
};

EventEmitter.prototype.listenerCount = function listenerCount(type) {
  return (events(this)[type] || []).length;
};

EventEmitter.prototype.setMaxListeners = function setMaxListeners() {
  return this;
};

EventEmitter.prototype.getMaxListeners = function getMaxListeners() {
  return Infinity;
};

EventEmitter.listenerCount = (ee, type) => ee.listenerCount(type);
EventEmitter.EventEmitter = EventEmitter;
