/** meshauthd: wiring of datapath, identity, authentication, audit and API into one daemon. */
export { Daemon } from './daemon.js';
