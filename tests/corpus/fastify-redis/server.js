import Fastify from 'fastify'
import Redis from 'ioredis'

const redis = new Redis(process.env.REDIS_URL || 'redis://localhost:6379')
const fastify = Fastify({ logger: true })

fastify.get('/ping', async () => ({ pong: await redis.ping() }))

fastify.post('/items', async (request, reply) => {
  const id = await redis.incr('links:next')
  await redis.hset('links', id, request.body.text)
  reply.code(201)
  return { id, text: request.body.text }
})

fastify.get('/items', async () => {
  const links = await redis.hgetall('links')
  return Object.entries(links)
    .map(([id, text]) => ({ id: Number(id), text }))
    .sort((a, b) => a.id - b.id)
})

const start = async () => {
  try {
    await fastify.listen({ port: Number(process.env.PORT) || 3000, host: '0.0.0.0' })
  } catch (err) {
    fastify.log.error(err)
    process.exit(1)
  }
}
start()
