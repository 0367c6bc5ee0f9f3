// No-op stand-in for @prsm/log, which @prsm/realtime depends on but the npm
// registry does not have. Used only by the benchmark.
const noop = () => {};

function logger() {
  return {
    trace: noop,
    debug: noop,
    info: noop,
    warn: noop,
    error: noop,
    fatal: noop,
    log: noop,
    configure: noop,
    child: () => logger(),
  };
}

const log = logger();
export default log;
export const { trace, debug, info, warn, error, fatal, configure, child } = log;
