# The S3-compatible test server of the repository (tools/s3rver, pinned by its package-lock.json), for
# the e2e suite's s3 volumes. Build from the repository root: docker build -f deploy/s3rver.Dockerfile .
FROM node:20-slim
WORKDIR /opt/s3rver
COPY tools/s3rver/package.json tools/s3rver/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error && mkdir -p /data
EXPOSE 5000
ENTRYPOINT ["node", "node_modules/s3rver/bin/s3rver.js", "--directory", "/data", "--address", "0.0.0.0", "--port", "5000"]
