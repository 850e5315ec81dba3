#!/usr/bin/env node
if (Number(process.versions.node.split('.')[0]) < 24) {
  process.stderr.write(
    `meshauth-relay needs Node.js 24 or newer; this is ${process.version}. ` +
      'scripts/setup.sh installs it; put it on PATH with ". scripts/env.sh".\n',
  );
  process.exit(1);
}
const { main } = await import('../dist/src/relay/main.js');

process.exitCode = await main();
