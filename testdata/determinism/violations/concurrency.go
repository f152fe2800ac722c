package violations

type pipe chan int

func concurrency() {
	ch := make(chan int, 1) // want chan untyped
	go func() {             // want goroutine untyped
		ch <- 1
	}()
	select { // want select untyped
	case <-ch:
	default:
	}
	_ = make(pipe) // want chan
}
