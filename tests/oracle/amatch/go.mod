module kafkahealing/amatch

go 1.22.0

require (
	github.com/prometheus/alertmanager v0.28.1
	github.com/prometheus/common v0.61.0
)

require (
	github.com/prometheus/client_model v0.6.1 // indirect
	google.golang.org/protobuf v1.35.2 // indirect
)
