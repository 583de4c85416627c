// aedes on a free loopback port for the interop tests: `node server.js PORT_FILE` writes the port once it listens.
// In-memory persistence (aedes' default): retained messages live as long as the process, like a plain mosquitto.
import { createServer } from 'node:net'
import { renameSync, writeFileSync } from 'node:fs'
import { Aedes } from 'aedes'

const portFile = process.argv[2]
if (!portFile) {
  console.error('usage: node server.js PORT_FILE')
  process.exit(2)
}
const broker = await Aedes.createBroker()
const server = createServer(broker.handle)
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address()
  writeFileSync(portFile + '.tmp', String(port) + '\n')
  renameSync(portFile + '.tmp', portFile) // the fixture never reads a half-written file
  console.log(`test aedes on 127.0.0.1:${port}`)
})
const stop = () => server.close(() => broker.close(() => process.exit(0)))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
