" syntax/nn.vim: Vim syntax for nnc's .nn model files (docs/language.md).  Add the folder
" docs/editors/vim to Vim's runtimepath (`set rtp+=/path/to/nnc/docs/editors/vim` in your
" vimrc), or copy syntax/nn.vim and ftdetect/nn.vim into ~/.vim/.  Kept in step with grammar/nn.l
" and the compiler's tables by ctest docs.editor_syntax.
if exists("b:current_syntax")
  finish
endif

syn keyword nnKeyword model input target param loss metric prior head block return train and or
syn keyword nnKeyword not
" reserved inside train { ... }
syn keyword nnTrainKeyword data test valid of batch epochs iterations optimizer sampler schedule
syn keyword nnTrainKeyword prune every stop when patience seed clip evaluate
syn keyword nnType f32 class
" layers, and what applies them
syn keyword nnLayer dense flatten relu leaky_relu elu tanh sigmoid softplus gelu identity shift
syn keyword nnLayer prelu gate size_gate conv2d conv1d maxpool avgpool maxpool1d avgpool1d
syn keyword nnLayer dropout batch_norm layer_norm bayes_dense bayes_conv2d bayes_conv1d repeat
syn keyword nnLayer fd_grad
" losses, metrics and heads
syn keyword nnLoss cross_entropy mse sse gaussian_nll cosine_diversity accuracy error
syn keyword nnLoss relative_error rmse nll bayes_linear
" optimizers, samplers, schedules, data sources, priors and initialisers
syn keyword nnTrainFunction sgd momentum adam adamw rmsprop adagrad pre_sgd adaptive_sgd
syn keyword nnTrainFunction only_adaptive_sgd hmc nuts sgld cosine warmup step exponential
syn keyword nnTrainFunction linear fashion_mnist idx csv npy normal laplace cauchy student_t
syn keyword nnTrainFunction truncated_normal zeros
syn keyword nnConstant true false same learned gates

syn match   nnComment "#.*$" contains=@Spell
syn region  nnString start=+"+ skip=+\\.+ end=+"+ end=+$+ contains=nnEscape
syn match   nnEscape +\\[nt\\"]+ contained
syn match   nnNumber "\<\d\+\(\.\d*\)\=\([eE][+-]\=\d\+\)\=\>"
syn match   nnNumber "\.\d\+\([eE][+-]\=\d\+\)\=\>"
syn match   nnOperator "->\|<=\|>=\|==\|!=\|[-+*/^=~<>]"
syn match   nnBlockName "\(\<block\s\+\)\@<=\h\w*"

hi def link nnKeyword       Keyword
hi def link nnTrainKeyword  Statement
hi def link nnType          Type
hi def link nnLayer         Function
hi def link nnLoss          Function
hi def link nnTrainFunction Identifier
hi def link nnConstant      Constant
hi def link nnComment       Comment
hi def link nnString        String
hi def link nnEscape        SpecialChar
hi def link nnNumber        Number
hi def link nnOperator      Operator
hi def link nnBlockName     Function

let b:current_syntax = "nn"
