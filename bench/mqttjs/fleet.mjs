// The MQTT.js side of bench/publisher: the same job as `mqtt-presence-sensor --count N`, in one Node process.
// Each client registers a retained "0" will (QoS 1) on PREFIX/<name>, publishes a retained "1" (QoS 1) at every
// connect, republishes it every HEARTBEAT seconds, and on SIGINT publishes a retained "0", waits for its
// acknowledgement and disconnects.
// Usage: node fleet.mjs URL PREFIX N HEARTBEAT_SECONDS [MQTT_VERSION: 4 (3.1.1, the default) or 5]
import mqtt from 'mqtt'

const [url, prefix, countText, heartbeatText, versionText] = process.argv.slice(2)
const count = Number(countText)
const heartbeat = Number(heartbeatText) * 1000
if (!url || !prefix || !(count > 0)) {
  console.error('usage: node fleet.mjs URL PREFIX N HEARTBEAT_SECONDS [4|5]')
  process.exit(2)
}

const clients = []
for (let i = 1; i <= count; i++) {
  const name = 's-' + String(i).padStart(6, '0')
  const topic = `${prefix}/${name}`
  const client = mqtt.connect(url, {
    clientId: `${prefix}-${name}`,
    protocolVersion: Number(versionText || 4),
    keepalive: 30,
    reconnectPeriod: 1000,
    will: { topic, payload: '0', qos: 1, retain: true }
  })
  client.on('connect', () => client.publish(topic, '1', { qos: 1, retain: true }))
  client.on('error', () => {})
  if (heartbeat > 0) {
    setInterval(() => { if (client.connected) client.publish(topic, '1', { qos: 1, retain: true }) }, heartbeat)
  }
  clients.push({ client, topic })
}

process.on('SIGINT', async () => {
  await Promise.all(clients.map(({ client, topic }) => new Promise((resolve) => {
    client.publish(topic, '0', { qos: 1, retain: true }, () => client.end(false, {}, resolve))
  })))
  process.exit(0)
})
