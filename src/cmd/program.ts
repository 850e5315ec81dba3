import { Command, Option } from 'commander';
import { describeOptions } from '../config/index.js';
import { configureUsage, exitStatusHelp, type UsageOutput } from '../usage.js';
import { VERSION } from '../version.js';

/** meshauthd's flags and help (src/usage.ts: help layout, usage errors). */
export function buildDaemonProgram(output?: UsageOutput): Command {
  const program = new Command('meshauthd')
    .description(
      'Out-of-band mutual authentication daemon, one per node.\n\n' +
        'Loads the BPF datapath, keeps the auth cache of (local identity, remote identity, remote node), ' +
        'answers auth-required signals with TLS 1.3 mutual handshakes to the peer node daemon, and ' +
        'records every decision in the audit trail.\n\n' +
        'Every setting can come from the config file, an environment variable or a flag ' +
        '(precedence: defaults < file < environment < flags).\n\n' +
        'Durations are a number and a unit: ms, s, m, h or d (250ms, 5s, 1.5h, 30d); a bare number ' +
        'is milliseconds ("5000" is 5s, not 5000 seconds). Each duration setting has the range ' +
        'printed with it, like (100ms..5m).\n\n' +
        'identity.source files takes SVIDs that another tool writes to disk, set in the config file only ' +
        '(a list has no flag or environment variable): identity.files.bundle is the trust bundle (PEM, ' +
        'concatenated DER or SPIFFE JWKS), identity.files.svids lists per workload identity of this node ' +
        'its spiffeId, cert (the chain, leaf first, PEM or DER) and key (PEM or DER). The files are watched ' +
        'and re-read on change; a chain is used only once it verifies as an X509-SVID of its spiffeId ' +
        'against the bundle and the key matches its leaf. examples/config.yaml has an example.\n\n' +
        'A fatal error is one message on stderr. "meshauthd: invalid configuration:" and one line per ' +
        'problem (exit status 2): a setting, or what the start found unusable in one (a file it names, ' +
        'the inventory or policy, an attach point, a listen port in use). "meshauthd: failed to start: ' +
        '<reason>" (exit status 1): anything else that stops the start, such as the kernel refusing the ' +
        'BPF programs or a port taken after the start-up check.',
    )
    .version(VERSION, '-V, --version')
    .helpOption('-h, --help', 'Show this help')
    .allowExcessArguments(false);
  for (const o of describeOptions()) {
    const flags =
      o.kind === 'bool' ? `${o.flag} [${o.valueName.replace(/[<>]/g, '')}]` : `${o.flag} ${o.valueName}`;
    const extra = [
      o.path ? `file: ${o.path}` : undefined,
      `env: ${o.env}`,
      o.default !== undefined ? `default: ${o.default}` : undefined,
    ]
      .filter(Boolean)
      .join('; ');
    // No commander defaults: a default here would override the config file.
    program.addOption(new Option(flags, `${o.description} (${extra})`));
  }
  program.addHelpText(
    'after',
    '\nExamples:\n' +
      '  meshauthd --config /etc/meshauth/config.yaml\n' +
      '  MESHAUTH_LOG_LEVEL=debug meshauthd --config config.yaml --handshake-port 4260\n' +
      '\nSignals: SIGTERM/SIGINT stop gracefully (maps stay pinned, programs stay attached).\n' +
      exitStatusHelp(
        'stopped cleanly',
        'runtime failure ("failed to start: ..."), or an unclean stop',
        'usage or configuration error (a bad option; "invalid configuration: ...")',
      ),
  );
  return configureUsage(program, output);
}
